"""A synthetic reading source: a boat on a route through a coverage scenario.

It stands in for the modem and GPS probes in demos and tests of the delivery path; its
readings go through the same buffer and uplink as real ones.  Time is compressed: the
boat moves at ``speed_kmh`` of wall-clock time, turning back at each end of the route.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from agent.shared.clock import Clock, TimeKeeper
from agent.shared.quality import signal_quality
from agent.shared.reading import Position, Reading, Signal
from agent.sim.scenario import CoverageScenario, Radio
from agent.sim.route import Route, RoutePoint


@dataclass
class SyntheticSource:
    device: str
    route: Route
    scenario: CoverageScenario
    speed_kmh: float
    clock: Clock = field(default_factory=TimeKeeper)
    monotonic: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._t0 = self.monotonic()

    def elapsed(self) -> float:
        return self.monotonic() - self._t0

    def where(self) -> tuple[RoutePoint, float]:
        """Where the boat is now, and its course (reversed on the way back)."""
        travelled = self.speed_kmh / 3.6 * self.elapsed()
        length = self.route.length_m
        lap, offset = divmod(travelled, length) if length else (0, 0.0)
        if int(lap) % 2 == 0:
            point = self.route.at(offset)
            return point, point.course_deg
        point = self.route.at(length - offset)
        return point, (point.course_deg + 180.0) % 360.0

    def radio(self) -> Radio:
        point, _ = self.where()
        return self.scenario.radio_at(point.lat, point.lon, self.elapsed())

    def read(self) -> Reading:
        point, course = self.where()
        radio = self.scenario.radio_at(point.lat, point.lon, self.elapsed())
        stamp = self.clock.now()
        position = Position(
            lat=round(point.lat, 6), lon=round(point.lon, 6), alt_m=12.0, hdop=0.9, sats=9,
            speed_kmh=round(self.speed_kmh, 1), course_deg=round(course, 1), fix="3d",
        )
        return Reading.taken(self.device, stamp, signal_from_radio(radio), position)


def signal_from_radio(radio: Radio) -> Signal:
    tower = radio.tower
    if tower is None:
        return Signal(registration="searching", rat="NONE", quality="none")
    return Signal(
        registration="home", operator=tower.operator, mcc=tower.mcc, mnc=tower.mnc, rat=tower.rat,
        band=tower.band, earfcn=tower.earfcn, pci=tower.pci, cell_id=tower.cell_id, tac=tower.tac,
        rssi_dbm=radio.rssi_dbm, rsrp_dbm=radio.rsrp_dbm, rsrq_db=radio.rsrq_db, sinr_db=radio.sinr_db,
        quality=signal_quality(tower.rat, rsrp_dbm=radio.rsrp_dbm) or "poor",
    )
