"""A field unit for tests: the agent with simulated devices on a boat on the Mahakam."""
from __future__ import annotations

import threading
from pathlib import Path

from agent.shared.geo import haversine_m
from agent.unit.service import AgentService
from agent.sim.boat import SimulatedBoat
from agent.sim.scenario import mahakam_scenario
from agent.sim.route import Route, mahakam_route
from tests.support.unit_config import write_config

SCENARIO = mahakam_scenario()
TOWN = Route(mahakam_route().waypoints[:2])  # Samarinda to Loa Janan: served all the way


def field_config(tmp_path: Path, port: int, boat: SimulatedBoat, **sections: dict) -> Path:
    overrides = {
        "source": {"kind": "devices"},
        "modem": {"port": boat.modem_port, "model": "quectel-ec25"},
        "gps": {"source": "serial", "port": boat.gps_port, "max_age": "2s"},
        "schedule": {"signal_interval": "200ms", "latency_interval": "1h", "scan_interval": "0s"},
        "latency": {"count": 2},
    }
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return write_config(tmp_path / "agent.toml", port, tmp_path / "buffer.db", overrides, device="boat-1")


def nearest_on_route(route: Route, lat: float, lon: float) -> float:
    return min(haversine_m(lat, lon, p.lat, p.lon) for p in (route.at(d) for d in range(0, int(route.length_m), 100)))


def run_in_thread(service: AgentService) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop, 20.0), daemon=True)
    thread.start()
    return stop, thread
