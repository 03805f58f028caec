"""SimulatedBoat: a simulated GPS receiver and modem that travel together along a route.

The receiver (:class:`~agent.sim.gps.SimulatedGps`) says where the boat is; the modem
(:class:`~agent.sim.modem.SimulatedModem`) answers signal commands from the coverage
scenario at that same place and time.  ``time_scale`` compresses the trip: simulated seconds
per wall second, for a 100 km river in under a minute.  A demo or a test puts a
:class:`~agent.sim.link.LinkProxy` between the agent and the broker and calls
:meth:`follow_link` so the uplink goes down exactly where the modem has no service.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Sequence

from agent.sim.scenario import CoverageScenario, Radio
from agent.sim.gps import SimulatedGps
from agent.sim.link import LinkProxy
from agent.sim.modem import SimulatedModem
from agent.sim.route import Route, RoutePoint


class SimulatedBoat:
    def __init__(self, route: Route, scenario: CoverageScenario, speed_kmh: float, *, time_scale: float = 1.0,
                 rate_hz: float = 1.0, model: str = "quectel-ec25", gps_style: str = "ublox",
                 no_sky: Sequence[tuple[float, float]] = (), start_time: dt.datetime | None = None,
                 workdir: str | Path | None = None, modem_time_scale: float = 0.05, sim: str = "ready") -> None:
        self.route = route
        self.scenario = scenario
        self.time_scale = time_scale
        self.start_time = (start_time or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
        self._t0 = time.monotonic()
        self.gps = SimulatedGps(route, speed_kmh, rate_hz=rate_hz, style=gps_style, no_sky=no_sky,
                                start_time=self.start_time, time_scale=time_scale, workdir=workdir)
        try:
            self.modem = SimulatedModem.for_profile(model, radio=self.radio, workdir=self.gps.workdir,
                                                    time_scale=modem_time_scale, sim=sim)
        except Exception:
            self.gps.close()
            raise
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        self.link_changes = 0

    @property
    def gps_port(self) -> str:
        return self.gps.port

    @property
    def modem_port(self) -> str:
        return self.modem.port

    def sim_time(self) -> dt.datetime:
        return self.start_time + dt.timedelta(seconds=(time.monotonic() - self._t0) * self.time_scale)

    def distance_m(self) -> float:
        return self.gps.distance_at(self.sim_time())

    def position(self) -> RoutePoint:
        return self.route.at(self.distance_m())

    def radio(self) -> Radio:
        when = self.sim_time()
        point = self.route.at(self.gps.distance_at(when))
        return self.scenario.radio_at(point.lat, point.lon, (when - self.start_time).total_seconds())

    def arrived(self) -> bool:
        return self.distance_m() >= self.route.length_m

    def follow_link(self, link: LinkProxy, every_s: float = 0.05) -> None:
        """Keep ``link`` up only while the modem has service (a thread, until :meth:`close`)."""

        def run() -> None:
            while not self._stop.is_set():
                covered = self.radio().tower is not None
                if covered != link.up:
                    link.set_up(covered)
                    self.link_changes += 1
                self._stop.wait(every_s)

        self._follower = threading.Thread(target=run, name="boat-link", daemon=True)
        self._follower.start()

    def close(self) -> None:
        self._stop.set()
        if self._follower is not None:
            self._follower.join(2)
        self.modem.close()
        self.gps.close()

    def __enter__(self) -> "SimulatedBoat":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
