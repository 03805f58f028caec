"""Readings for tests: one of each kind, at a fixed time, without seq."""
from __future__ import annotations

import base64
import random
from dataclasses import replace
from datetime import datetime, timezone

from agent.shared.reading import Event, Latency, Position, Reading, Signal, Throughput

T0 = datetime(2026, 11, 24, 3, 4, 5, 678000, tzinfo=timezone.utc)
SAMARINDA = Position(lat=-0.503, lon=117.146, alt_m=12.0, hdop=0.9, sats=9, speed_kmh=14.5, course_deg=281.0, fix="3d")


def signal_reading(device: str = "unit-1", position: Position | None = SAMARINDA) -> Reading:
    part = Signal(registration="home", operator="TELKOMSEL", mcc="510", mnc="10", rat="LTE", band=3, earfcn=1850,
                  pci=101, cell_id=0x1A2B301, tac=0x2B01, rssi_dbm=-71.0, rsrp_dbm=-99.0, rsrq_db=-11.0,
                  sinr_db=7.5, quality="fair")
    return Reading(device, T0, "ntp", part, position)


def bulky_reading(device: str = "unit-1") -> Reading:
    """A signal reading that takes ~500 bytes in the buffer, which stores bodies deflated: its
    operator name and error are 256 characters each (the most the schema allows) that do not
    compress."""
    noise = base64.b64encode(random.Random(1).randbytes(384)).decode()
    part = replace(signal_reading(device).part, operator=noise[:256], error=noise[256:])
    return replace(signal_reading(device), part=part)


def no_service_reading(device: str = "unit-1") -> Reading:
    return Reading(device, T0, "gps", Signal(registration="searching", rat="NONE", quality="none"), SAMARINDA)


def latency_reading(device: str = "unit-1") -> Reading:
    part = Latency(target="8.8.8.8", method="icmp", sent=5, received=4, loss_pct=20.0, rtt_min_ms=48.1,
                   rtt_avg_ms=55.0, rtt_max_ms=71.9, jitter_ms=6.2)
    return Reading(device, T0, "ntp", part, None)


def throughput_reading(device: str = "unit-1") -> Reading:
    part = Throughput(backend="http", server="collector.example", down_mbps=4.2, up_mbps=None, bytes_used=2_000_000, duration_s=3.8)
    return Reading(device, T0, "unsynced", part, None)


def event_reading(device: str = "unit-1") -> Reading:
    return Reading(device, T0, "ntp", Event("tag", "kantor desa", {"button": "short"}), SAMARINDA)


ALL_KINDS = (signal_reading, no_service_reading, latency_reading, throughput_reading, event_reading)
