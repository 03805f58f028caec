"""Coverage scenarios: what a modem would measure at a place and time.

A scenario is a set of towers, each with a position, a range and its identity.  Inside a
tower's range RSRP falls with log-distance from -60 dBm at the mast to about -118 dBm at the
edge; outside every range there is no service.  Near an edge (the outer ``flap_margin`` of
the range) the signal comes and goes with time, as it does on a real river bend.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from agent.shared.geo import haversine_m


@dataclass(frozen=True)
class Tower:
    name: str
    lat: float
    lon: float
    range_m: float
    operator: str = "TELKOMSEL"
    mcc: str = "510"
    mnc: str = "10"   # the digits the network broadcasts: Indosat is "01"
    rat: str = "LTE"
    band: int = 3
    earfcn: int = 1850
    pci: int = 1
    cell_id: int = 1
    tac: int = 1


@dataclass(frozen=True)
class Radio:
    """Conditions at one place and time; ``tower`` None means no service."""

    tower: Tower | None
    rsrp_dbm: float | None = None
    rsrq_db: float | None = None
    sinr_db: float | None = None
    rssi_dbm: float | None = None


@dataclass(frozen=True)
class CoverageScenario:
    towers: tuple[Tower, ...]
    flap_margin: float = 0.1
    flap_period_s: float = 20.0

    def radio_at(self, lat: float, lon: float, t: float = 0.0) -> Radio:
        best: Radio = Radio(None)
        for tower in self.towers:
            d = haversine_m(lat, lon, tower.lat, tower.lon)
            if d > tower.range_m:
                continue
            edge = d / tower.range_m
            if edge > 1 - self.flap_margin and math.sin(2 * math.pi * t / self.flap_period_s + tower.pci) < 0:
                continue
            rsrp = -60.0 - 58.0 * math.log10(1 + 9 * edge)
            if best.rsrp_dbm is None or rsrp > best.rsrp_dbm:
                sinr = max(-5.0, 25.0 - 30.0 * edge)
                best = Radio(tower, rsrp_dbm=round(rsrp, 1), rsrq_db=round(-6 - 10 * edge, 1),
                             sinr_db=round(sinr, 1), rssi_dbm=round(rsrp + 28, 1))
        return best


def mahakam_scenario() -> CoverageScenario:
    """Towers at the river towns; between Sebulu and Muara Kaman the river is a blank spot."""
    return CoverageScenario(
        (
            Tower("Samarinda", -0.5030, 117.1460, 12_000, pci=101, cell_id=0x1A2B301, tac=0x2B01, earfcn=1850, band=3),
            Tower("Loa Kulu", -0.5050, 117.0010, 9_000, pci=112, cell_id=0x1A2B402, tac=0x2B02, earfcn=1850, band=3),
            Tower("Tenggarong", -0.4240, 116.9840, 11_000, pci=123, cell_id=0x1A2B503, tac=0x2B03, earfcn=500, band=1),
            Tower("Kota Bangun", -0.2600, 116.5900, 10_000, pci=134, cell_id=0x1A2B604, tac=0x2B04, earfcn=3500, band=8),
        )
    )
