"""GpsFeed: one thread that keeps positions coming, whatever the receiver does.

It owns the GPS reader (serial NMEA, the modem's NMEA port, or gpsd), and for every epoch
updates the current fix, the odometer (distance and speed for the mobile schedule) and the
time keeper (GPS time when the system clock is unsynchronised).  A receiver that vanishes
(USB re-enumeration, gpsd restarting) is reopened with a growing pause; meanwhile the fix is
``none`` and readings carry no position, which is what they should say.

The first time the time keeper takes a date the reader corrected for the GPS week rollover,
the feed keeps a ``gps_date_corrected`` event for the probes to record (once per run): the
readings' times then rest on a correction, and the centre must be able to tell.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable

from agent.shared.clock import TimeKeeper, boottime
from agent.shared.reading import Event
from agent.unit.devices.gps.fix import NO_FIX, Fix
from agent.unit.devices.gps.motion import Odometer
from agent.unit.devices.gps.reader import GpsError

log = logging.getLogger(__name__)


@dataclass
class GpsFeed:
    """``open_reader`` returns a reader with ``read_fix``/``close`` (GpsReader or GpsdReader)."""

    open_reader: Callable[[], object]
    describe: str
    keeper: TimeKeeper
    max_age_s: float = 5.0
    retry_max_s: float = 30.0
    odometer: Odometer = field(default_factory=Odometer)
    receiver_present: bool = False
    epochs: int = 0
    _fix: Fix = NO_FIX
    _fix_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _events: list[Event] = field(default_factory=list)
    _date_correction_told: bool = False

    def start(self) -> "GpsFeed":
        self._thread = threading.Thread(target=self._run, name="gps-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(3)

    def current(self) -> Fix:
        """The latest fix, or ``none`` when it is older than ``max_age_s``."""
        with self._lock:
            if boottime() - self._fix_at > self.max_age_s:
                return NO_FIX
            return self._fix

    @property
    def state(self) -> str:
        """``absent`` (no receiver), ``none``, ``2d`` or ``3d``: what the GPS light shows."""
        return self.current().fix if self.receiver_present else "absent"

    def new_events(self) -> list[Event]:
        """Events about the receiver since the last call, for the probes to record."""
        with self._lock:
            events, self._events = self._events, []
        return events

    def distance_m(self) -> float:
        with self._lock:
            return self.odometer.distance_m

    def speed_kmh(self) -> float | None:
        fix = self.current()
        if fix.fix == "none":
            return None
        with self._lock:
            return fix.speed_kmh if fix.speed_kmh is not None else self.odometer.speed_kmh

    def _run(self) -> None:
        pause = 1.0
        while not self._stop.is_set():
            try:
                reader = self.open_reader()
            except GpsError as exc:
                if self.receiver_present or pause == 1.0:
                    log.warning("GPS: %s; retrying", exc)
                self.receiver_present = False
                self._stop.wait(pause)
                pause = min(self.retry_max_s, pause * 2)
                continue
            log.info("GPS: reading %s", self.describe)
            self.receiver_present = True
            pause = 1.0
            try:
                while not self._stop.is_set():
                    fix = reader.read_fix(1.0)  # type: ignore[attr-defined]
                    if fix is not None:
                        self._take(fix)
            except GpsError as exc:
                log.warning("GPS: %s", exc)
                self.receiver_present = False
            finally:
                reader.close()  # type: ignore[attr-defined]

    def _take(self, fix: Fix) -> None:
        now = boottime()
        with self._lock:
            first = self.epochs == 0
            self.epochs += 1
            self._fix, self._fix_at = fix, now
            if fix.fix != "none":
                self.odometer.update(fix, now)
        if first:
            log.info("GPS: first epoch (%s)", fix.fix)
        taken = self.keeper.gps_fix(fix)
        if taken and fix.date_corrected_weeks and not self._date_correction_told:
            self._date_correction_told = True
            with self._lock:
                self._events.append(date_corrected_event(fix))


def date_corrected_event(fix: Fix) -> Event:
    """The ``gps_date_corrected`` event for a fix whose date the reader moved forward."""
    assert fix.time is not None
    weeks = fix.date_corrected_weeks
    used = fix.time.date()
    said = used - timedelta(weeks=weeks)
    return Event("gps_date_corrected",
                 f"GPS receiver reports dates {weeks} weeks early (a firmware week-rollover bug): "
                 f"its {said} is taken as {used}",
                 {"receiver_date": said.isoformat(), "corrected_date": used.isoformat(), "weeks": weeks})
