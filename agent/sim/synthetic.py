"""A synthetic reading source: a boat on a route through a coverage scenario.

It stands in for the modem and GPS probes in demos and tests of the delivery path, through
the same :class:`~agent.unit.probes.Probes` interface; its readings go through the same
buffer and uplink as real ones.  Time is compressed: the boat moves at ``speed_kmh`` of
wall-clock time, turning back at each end of the route.

Its signal is what a Quectel EC25 there would report: the simulated modem's answers to the
profile's signal commands, read by the agent's own parsers.  So its readings carry what a
modem prints (whole dB, quantised levels), not the scenario's exact figures.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from agent.shared.clock import Clock, TimeKeeper, Timestamp
from agent.shared.reading import Position, Reading, Signal
from agent.sim.modem_answers import AnswerModes, dynamic_answer
from agent.sim.scenario import CoverageScenario, Radio
from agent.sim.route import Route, RoutePoint
from agent.unit.devices.gps.fix import Fix
from agent.unit.devices.modem.profiles import ModemProfile, load_profile
from agent.unit.devices.modem.signal import facts_from_answer, signal_from_facts
from agent.unit.gps_feed import GpsFeed

MODEL = "quectel-ec25"
# What the EC25 profile's init sets (AT+CREG=2, AT+CEREG=2): the read answers carry the cell.
MODES = AnswerModes(creg=2, cereg=2)


@lru_cache(maxsize=1)
def _profile() -> ModemProfile:
    return load_profile(MODEL)


def modem_signal(radio: Radio) -> Signal:
    """The signal an EC25 reports under ``radio``: its answers, read as the agent reads a modem's."""
    profile = _profile()
    facts = []
    for command in profile.signal_commands:
        answer = dynamic_answer(profile.driver, command, radio, MODES)
        assert answer is not None, f"{MODEL}: {command} is not a dynamic command of {profile.driver}"
        facts.append(facts_from_answer(command, "\n".join(answer[:-1])))  # the lines before OK
    return signal_from_facts(facts)


@dataclass
class SteppedTime:
    """Wall and monotonic time that move only when told, so a whole trip is made at once."""

    start: datetime
    elapsed: float = 0.0

    def monotonic(self) -> float:
        return self.elapsed

    def now(self) -> Timestamp:
        return Timestamp(self.start + timedelta(seconds=self.elapsed), "gps")


@dataclass
class SyntheticSource:
    """The probes of a boat that takes one signal reading every ``interval`` seconds."""

    device: str
    route: Route
    scenario: CoverageScenario
    speed_kmh: float
    clock: Clock = field(default_factory=TimeKeeper)
    interval: float = 10.0
    gps: GpsFeed | None = field(default=None, init=False)
    last_signal_reading: Reading | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._t0 = self.clock.monotonic()
        self._due = self._t0

    def elapsed(self) -> float:
        return self.clock.monotonic() - self._t0

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
        return Reading.taken(self.device, stamp, modem_signal(radio), position)

    # -- the probes' interface -------------------------------------------------------------

    def start(self) -> "SyntheticSource":
        return self

    def tick(self) -> list[Reading]:
        """One reading when ``interval`` has passed since the last one was due, else none."""
        now = self.clock.monotonic()
        if now < self._due:
            return []
        self._due += self.interval
        if self._due < now - self.interval:  # fell far behind (suspend, slow disk): do not burst
            self._due = now + self.interval
        reading = self.read()
        self.last_signal_reading = reading
        return [reading]

    def next_in(self) -> float:
        return self._due - self.clock.monotonic()

    def fix(self) -> Fix | None:
        # Its positions are the boat's own; there is no receiver to place other readings.
        return None

    def collect(self) -> list[Reading]:
        return []

    def stop(self, wait: float = 5.0) -> None:
        pass
