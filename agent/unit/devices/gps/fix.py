"""Merging the sentences of one epoch into a fix.

A receiver reports each measurement epoch as a burst of sentences (GGA, RMC, GSA, ...) that
share one UTC time of day. ``FixState.update`` collects them and returns the finished ``Fix``
when the epoch ends. The rule:

- A sentence carrying a UTC time different from the open epoch's time ends that epoch and
  opens a new one. Distinct times are distinct epochs, even 0.98 s apart (some receivers
  jitter between ``.01`` and ``.99``).
- Sentences without a time (GSA, VTG, GSV, or GGA/RMC that a receiver without a fix sends
  empty) belong to the open epoch. An epoch that has no time yet takes the first time that
  arrives.
- A second GGA, RMC, GLL, GNS or VTG from the same talker also ends the open epoch when
  either has no time: a receiver with no fix may send no time at all, and its epochs must
  still end; and an untimed no-fix epoch must not swallow the first timed fix after it.

How the fix is judged within an epoch:

- RMC or GLL status V (or mode N, M, S), GGA quality 0, 7 or 8, GNS with no system measured,
  or GSA fix type 1 -> ``"none"``, with ``lat``/``lon`` None, whatever other sentences say.
- Otherwise the mode comes from GSA when present (2 or 3), else from GGA/GNS (a fix with an
  altitude is ``"3d"``, without ``"2d"``), else a valid RMC or GLL alone gives ``"2d"``.
- Position from GGA, else GNS, else RMC, else GLL; a fix without a position is ``"none"``.
  Some receivers (Garmin, Humminbird, Magellan) send epochs whose only position is a GLL.
- ``time`` is a UTC datetime only when a date is known from a valid RMC (this epoch's, or the
  last one seen, rolled over midnight when the time of day goes backwards by more than 12 h).
  An RMC with status V carries the receiver's guess (a MediaTek at power-up says 1980-01-05):
  its date is not used.

GPS week rollover: GPS counts weeks in 10 bits, so a receiver whose firmware does not know
which 1024-week era it is in reports dates 1024 weeks (7168 days, about 19.6 years) early
(a Telit HE910 in April 2019 said 1999-08-22).  No date a receiver sends can truly be before
``reference_date`` (by default the software's release date, ``shared.clock.RELEASE_DATE``: no
unit runs this code before it), so an earlier date is moved forward by whole 1024-week
periods until it is not, and the fix says by how many weeks (``date_corrected_weeks``); the
time keeper logs it and the agent records it as an event.  The position and the time of day
are kept: only the date was wrong.  Tests replay an old recording as of the day it was made.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time as _time
from dataclasses import dataclass, field
from typing import Literal

from agent.shared.clock import RELEASE_DATE

from .nmea import Gga, Gll, Gns, Gsa, Rmc, Sentence, Vtg

FixMode = Literal["none", "2d", "3d"]

# The GPS week number has 10 bits: it wraps every 1024 weeks.
ROLLOVER_WEEKS = 1024
ROLLOVER = dt.timedelta(weeks=ROLLOVER_WEEKS)


@dataclass(frozen=True)
class Fix:
    """One epoch's position (the ``position`` part of a reading plus ``time``)."""

    time: dt.datetime | None
    lat: float | None
    lon: float | None
    alt_m: float | None
    hdop: float | None
    sats: int | None
    speed_kmh: float | None
    course_deg: float | None
    fix: FixMode
    # The reader's clock (CLOCK_BOOTTIME in GpsReader) when the epoch's first sentence
    # arrived: ties ``time`` to the unit's own clock, for using GPS as the time source.
    received: float | None = field(default=None, compare=False)
    # Weeks added to the receiver's date (a multiple of 1024, see the module docstring);
    # 0 when the date is the receiver's own.
    date_corrected_weeks: int = 0


NO_FIX = Fix(None, None, None, None, None, None, None, None, "none")


@dataclass
class _Epoch:
    time: dt.time | None = None
    sentences: list[Sentence] = field(default_factory=list)
    opened_at: float | None = None

    def has(self, kind: type, talker: str) -> bool:
        return any(type(s) is kind and s.talker == talker for s in self.sentences)


def _first(*values):  # type: ignore[no-untyped-def]
    for v in values:
        if v is not None:
            return v
    return None


class FixState:
    """Collects sentences into epochs; see the module docstring for the rules."""

    def __init__(self, reference_date: dt.date = RELEASE_DATE) -> None:
        self.reference_date = reference_date
        self._epoch = _Epoch()
        self._date: dt.date | None = None
        self._date_weeks = 0
        self._date_tod: dt.time | None = None
        self._last: Fix | None = None
        self._last_at: float | None = None

    def update(self, sentence: Sentence, now_monotonic: float | None = None) -> Fix | None:
        """Add one sentence; return the previous epoch's fix if this sentence ended it.

        ``now_monotonic`` is any monotonic clock (the reader uses CLOCK_BOOTTIME); it
        ages fixes and becomes the fix's ``received``.
        """
        when = _time.monotonic() if now_monotonic is None else now_monotonic
        stamp = getattr(sentence, "time", None)
        done: Fix | None = None
        ep = self._epoch
        if ep.sentences:
            if stamp is not None and ep.time is not None and stamp != ep.time:
                done = self._finish(when)
            elif (stamp is None or ep.time is None) and isinstance(
                sentence, (Gga, Rmc, Gll, Gns, Vtg)
            ) and ep.has(type(sentence), sentence.talker):
                done = self._finish(when)
        ep = self._epoch
        if ep.time is None and stamp is not None:
            ep.time = stamp
        if not ep.sentences:
            ep.opened_at = when
        ep.sentences.append(sentence)
        return done

    def flush(self, now_monotonic: float | None = None) -> Fix | None:
        """End the open epoch (e.g. at the end of a capture); None if it was empty."""
        if not self._epoch.sentences:
            return None
        return self._finish(_time.monotonic() if now_monotonic is None else now_monotonic)

    def current(self, now_monotonic: float, max_age_s: float) -> Fix:
        """The last completed fix, or a ``"none"`` fix if there is none or it is older than max_age_s."""
        if self._last is None or self._last_at is None or now_monotonic - self._last_at > max_age_s:
            return NO_FIX
        return self._last

    def _finish(self, when: float) -> Fix:
        ep = self._epoch
        self._epoch = _Epoch()
        fix = dataclasses.replace(self._merge(ep), received=ep.opened_at)
        self._last, self._last_at = fix, when
        return fix

    def _merge(self, ep: _Epoch) -> Fix:
        ggas = [s for s in ep.sentences if isinstance(s, Gga)]
        rmcs = [s for s in ep.sentences if isinstance(s, Rmc)]
        glls = [s for s in ep.sentences if isinstance(s, Gll)]
        gnss = [s for s in ep.sentences if isinstance(s, Gns)]
        gsas = [s for s in ep.sentences if isinstance(s, Gsa)]
        vtgs = [s for s in ep.sentences if isinstance(s, Vtg)]
        gga = next((s for s in ggas if s.lat is not None), ggas[0] if ggas else None)
        gns = next((s for s in gnss if s.lat is not None), gnss[0] if gnss else None)
        rmc = next((s for s in rmcs if s.lat is not None), rmcs[0] if rmcs else None)
        gll = next((s for s in glls if s.lat is not None), None)
        vtg = vtgs[0] if vtgs else None
        gsa_modes = [s.mode for s in gsas if s.mode is not None]

        when = self._datetime(ep.time, rmc)

        no_fix = (
            any(not s.status_valid for s in rmcs)
            or any(not s.status_valid for s in glls)
            or any(not s.has_fix for s in ggas)
            or any(not s.has_fix for s in gnss)
            or (bool(gsa_modes) and max(gsa_modes) == 1)
        )
        lat = lon = None
        for src in (gga, gns, rmc, gll):
            if src is not None and src.lat is not None:
                lat, lon = src.lat, src.lon
                break
        alt = _first(gga.alt_m if gga else None, gns.alt_m if gns else None)
        mode: FixMode
        if no_fix or lat is None:
            mode = "none"
        elif gsa_modes:
            mode = "3d" if max(gsa_modes) == 3 else "2d"
        elif gga is not None or gns is not None:
            mode = "3d" if alt is not None else "2d"
        else:
            mode = "2d"
        weeks = self._date_weeks if when is not None else 0
        if mode == "none":
            return Fix(when, None, None, None, None, None, None, None, "none", date_corrected_weeks=weeks)
        return Fix(
            time=when,
            lat=lat,
            lon=lon,
            alt_m=alt,
            hdop=_first(gga.hdop if gga else None, gns.hdop if gns else None,
                        *(s.hdop for s in gsas)),
            sats=_first(gga.sats if gga else None, gns.sats if gns else None),
            speed_kmh=_first(rmc.speed_kmh if rmc else None, vtg.speed_kmh if vtg else None),
            course_deg=_first(rmc.course_deg if rmc else None, vtg.course_deg if vtg else None),
            fix=mode,
            date_corrected_weeks=weeks,
        )

    def _datetime(self, tod: dt.time | None, rmc: Rmc | None) -> dt.datetime | None:
        if rmc is not None and rmc.status_valid and rmc.date is not None and rmc.time is not None:
            self._date, self._date_weeks = rollover_corrected(rmc.date, self.reference_date)
            self._date_tod = rmc.time
        if tod is None or self._date is None or self._date_tod is None:
            return None
        day = self._date
        # A time of day far behind the one the date came with means midnight has passed.
        gap = _seconds(tod) - _seconds(self._date_tod)
        if gap < -12 * 3600:
            day += dt.timedelta(days=1)
        elif gap > 12 * 3600:
            day -= dt.timedelta(days=1)
        return dt.datetime.combine(day, tod.replace(tzinfo=None), tzinfo=dt.timezone.utc)


def rollover_corrected(day: dt.date, reference: dt.date) -> tuple[dt.date, int]:
    """``day`` moved forward by whole 1024-week periods until it is not before ``reference``,
    and the weeks added (0 when ``day`` is already on or after it)."""
    weeks = 0
    while day < reference:
        day += ROLLOVER
        weeks += ROLLOVER_WEEKS
    return day, weeks


def _seconds(t: dt.time) -> float:
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6
