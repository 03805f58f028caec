"""Where reading timestamps come from, and whether they can be trusted.

A Raspberry Pi has no real-time clock; the kernel knows whether NTP (or anything else)
has disciplined the system clock, and ``adjtimex(2)`` tells.  ``SystemClock`` stamps
readings with the system time and says ``ntp`` when the kernel reports the clock
synchronised, ``unsynced`` otherwise.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Protocol

log = logging.getLogger(__name__)

TIME_ERROR = 5  # adjtimex(2): clock not synchronised


@dataclass(frozen=True)
class Timestamp:
    time: datetime
    source: str  # "gps" | "ntp" | "unsynced"


class Clock(Protocol):
    def now(self) -> Timestamp: ...


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
class SystemClock:
    """System time, labelled by what the kernel says of its synchronisation."""

    synchronised: Callable[[], bool | None] = kernel_clock_synchronised

    def now(self) -> Timestamp:
        moment = datetime.now(timezone.utc)
        return Timestamp(moment, "ntp" if self.synchronised() else "unsynced")
