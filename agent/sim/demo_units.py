"""The part of a config file every unit of the demo shares."""
from __future__ import annotations

from pathlib import Path

from agent.sim.broker import LocalBroker


def unit_toml(device: str, work: Path, uplink_port: int, broker: LocalBroker, modem_port: str) -> str:
    """The config every demo unit shares: its buffer in ``work``, its uplink through a link
    proxy on ``uplink_port`` with short waits (the trip is minutes), a Quectel on ``modem_port``."""
    return f"""
        [device]
        id = "{device}"
        [buffer]
        path = "{work / 'buffer.db'}"
        [uplink]
        host = "127.0.0.1"
        port = {uplink_port}
        protocol = "{broker.protocol}"
        backoff_min = "200ms"
        backoff_max = "1s"
        keepalive = "5s"
        batch_size = 50
        encoding = "compact"
        [budget]
        ledger = "{work / 'usage.db'}"
        [source]
        kind = "devices"
        [modem]
        port = "{modem_port}"
        model = "quectel-ec25"
"""
