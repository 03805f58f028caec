"""Where reading timestamps come from, and whether they can be trusted.

A Raspberry Pi has no real-time clock: after a power cut in a blank spot it believes it is
1970, or the moment of its last shutdown, until NTP or a GPS fix says otherwise.  The kernel
knows whether anything has disciplined the system clock and ``adjtimex(2)`` tells.

``TimeKeeper`` stamps every reading with a time and its source:

- ``ntp``: the kernel says the system clock is synchronised (NTP, chrony, or gpsd feeding
  chrony), and it shows a plausible date;
- ``gps``: the system clock is not synchronised but a GPS fix with a date has been seen in
  this boot; the time is that fix's UTC time carried forward on ``CLOCK_BOOTTIME`` (a date the
  GPS reader corrected for the week rollover is used too, and said so in the log once);
- ``unsynced``: neither; the system time is used as it is and marked untrusted.

Every stamp also records ``CLOCK_BOOTTIME`` (seconds since boot, never stepped, counting
suspend), so a reading stamped ``unsynced`` can be corrected once a trusted time appears in
the same boot: ``true time = trusted now - (boottime now - boottime then)``.  The buffer does
that (``ReadingBuffer.correct_times``).  We never step the system clock ourselves: that is
chrony's job, and it needs privileges the agent does not have.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Callable, Protocol

log = logging.getLogger(__name__)

TIME_ERROR = 5  # adjtimex(2): clock not synchronised

# The day this version is released: move it forward with every release.  No unit runs this
# code before that day, so a GPS receiver's date before it is wrong: old firmware hit by the
# GPS week-number rollover reports dates 1024 weeks (about 19.6 years) early.  The NMEA reader
# (``devices.gps.fix``) moves such a date forward by whole 1024-week periods until it is not
# before this one, which stays right for 1024 weeks after it.  Never a day still to come: a
# correct receiver's date before it would be moved 19.6 years ahead.
RELEASE_DATE = date(2026, 12, 1)

# A clock before this has never been set: an RTC-less Pi at 1970, a stale fake-hwclock, or a
# GPS time nobody corrected for the week rollover (gpsd's are taken as gpsd gives them).
# Fixed, unlike RELEASE_DATE: it only tells a set clock from an unset one.
EARLIEST_PLAUSIBLE = datetime(2026, 1, 1, tzinfo=timezone.utc)

TRUSTED_SOURCES = ("gps", "ntp")


@dataclass(frozen=True)
class Timestamp:
    time: datetime
    source: str  # "gps" | "ntp" | "unsynced"
    boottime: float | None = None  # CLOCK_BOOTTIME when the stamp was taken

    @property
    def trusted(self) -> bool:
        return self.source in TRUSTED_SOURCES


class Clock(Protocol):
    """What readings are stamped with, and what time spans are measured on."""

    def now(self) -> Timestamp: ...

    def monotonic(self) -> float:
        """Seconds on a clock that never steps (no epoch): for spans, never for stamps."""
        ...


class GpsTime(Protocol):
    """What the clock needs of a GPS fix (the receiver's ``Fix`` is one): its mode
    (``"none"`` without a position), its UTC time if it has a date, and the
    ``CLOCK_BOOTTIME`` at which it arrived."""

    @property
    def fix(self) -> str: ...

    @property
    def time(self) -> datetime | None: ...

    @property
    def received(self) -> float | None: ...

    @property
    def date_corrected_weeks(self) -> int:
        """Weeks the reader added to the receiver's date (week rollover); 0 if none."""
        ...


def boottime() -> float:
    """Seconds since boot on ``CLOCK_BOOTTIME``: never stepped, counts time suspended."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


_PROCESS_BOOT = f"process-{uuid.uuid4()}"


@functools.lru_cache(maxsize=1)
def boot_id() -> str:
    """The kernel's id of this boot; boottime values compare only within one boot.

    Without ``/proc`` (not Linux), a per-process id: corrections then stay within one run.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return _PROCESS_BOOT


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    # find_library runs ldconfig in a subprocess: once, not per reading.
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def kernel_clock_synchronised() -> bool | None:
    """True if the kernel says the system clock is synchronised; None if it cannot be asked."""
    libc = _libc()
    if libc is None:
        return None
    try:
        buf = ctypes.create_string_buffer(512)  # larger than struct timex; modes = 0 reads only
        state = libc.adjtimex(buf)
    except AttributeError:
        return None
    if state < 0:
        return None
    return state != TIME_ERROR


@dataclass
class TimeKeeper:
    """The agent's clock: system time when synchronised, else GPS time, else marked unsynced.

    ``gps_fix`` is fed every fix from the GPS reader, which records the boottime at which each
    epoch's first sentence arrived (``GpsTime.received``).  The injected functions are for tests and for the
    simulator's compressed time; ``steady`` is what :meth:`monotonic` reads.
    """

    synchronised: Callable[[], bool | None] = kernel_clock_synchronised
    wall: Callable[[], float] = time.time
    boot: Callable[[], float] = boottime
    steady: Callable[[], float] = time.monotonic
    _gps: tuple[datetime, float] | None = field(default=None, init=False)
    _warned_implausible: bool = field(default=False, init=False)
    _warned_corrected: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def gps_fix(self, fix: GpsTime) -> bool:
        """Take a fix's UTC time as the reference; False (ignored) without a position or a
        date, or when implausible.  A receiver without a fix may still print its RTC's guess
        of the time: that guess is not trusted.  A date the reader moved forward for the GPS
        week rollover is taken (the time of day and the position are right, the era was not),
        and the first one is logged: a technician must know the receiver's firmware is at
        fault and its dates are not its own."""
        fix_time, received_boottime = fix.time, fix.received
        if fix.fix == "none" or fix_time is None or received_boottime is None:
            return False
        if fix_time < EARLIEST_PLAUSIBLE:
            if not self._warned_implausible:
                log.warning("GPS reports %s, before %s: ignored as a time source (receiver firmware with "
                            "the week-rollover bug?)", fix_time.isoformat(), EARLIEST_PLAUSIBLE.date())
                self._warned_implausible = True
            return False
        weeks = fix.date_corrected_weeks
        if weeks and not self._warned_corrected:
            self._warned_corrected = True
            said = (fix_time - timedelta(weeks=weeks)).date()
            log.warning("GPS receiver reports dates %d weeks early (a firmware week-rollover bug); dates "
                        "corrected by %d weeks (it says %s, taken as %s) before they are used as the time. "
                        "A firmware update from the receiver's maker ends this", weeks, weeks, said,
                        fix_time.date())
        with self._lock:
            first = self._gps is None
            self._gps = (fix_time, received_boottime)
        if first:
            offset = fix_time.timestamp() - (self.wall() - (self.boot() - received_boottime))
            log.info("clock: GPS time available; the system clock is %+.1f s off it", -offset)
        return True

    def now(self) -> Timestamp:
        b = self.boot()
        wall = datetime.fromtimestamp(self.wall(), timezone.utc)
        if self.synchronised() and wall >= EARLIEST_PLAUSIBLE:
            return Timestamp(wall, "ntp", b)
        with self._lock:
            gps = self._gps
        if gps is not None:
            return Timestamp(gps[0] + timedelta(seconds=b - gps[1]), "gps", b)
        return Timestamp(wall, "unsynced", b)

    def monotonic(self) -> float:
        return self.steady()

    @property
    def source(self) -> str:
        return self.now().source
