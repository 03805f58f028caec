"""Running one kind of measurement in the background, with a deadline.

Each kind (signal, latency, throughput, scan) has its own ``ProbeRunner``: a measurement runs
on its own thread, so a hung modem or a stalled download never blocks another kind of
measurement, the uplink, or the main loop that pings the watchdog.  A measurement still
running after ``timeout`` is abandoned: the main loop gets a ``timed_out`` outcome at once
and the runner refuses new work until the stuck call returns (Python cannot kill a thread;
starting another on the same modem would only queue behind it).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
C = TypeVar("C")


@dataclass(frozen=True)
class Outcome(Generic[T, C]):
    kind: str
    context: C                   # what the caller attached when starting (time, position)
    result: T | None = None
    error: str | None = None     # the measurement raised: an agent bug, logged with its traceback
    timed_out: bool = False
    seconds: float = 0.0


class ProbeRunner(Generic[T, C]):
    def __init__(self, kind: str, measure: Callable[[], T], timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kind = kind
        self.measure = measure
        self.timeout = timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._context: Any = None
        self._done: Outcome[T, C] | None = None
        self._abandoned = False
        self.on_done: Callable[[], None] | None = None  # called on the measurement's thread when it ends

    @property
    def busy(self) -> bool:
        """A measurement is running (or a timed-out one has not returned yet)."""
        with self._lock:
            return self._thread is not None

    def start(self, context: C) -> bool:
        """Begin a measurement; False when the previous one is still running."""
        with self._lock:
            if self._thread is not None:
                return False
            self._started = self.clock()
            self._context = context
            self._done = None
            self._abandoned = False
            self._thread = threading.Thread(target=self._run, name=f"probe-{self.kind}", daemon=True)
            self._thread.start()
            return True

    def _run(self) -> None:
        result: T | None = None
        error = None
        try:
            result = self.measure()
        except Exception as exc:  # a bug in a probe must not take the agent down
            log.exception("%s measurement failed", self.kind)
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            seconds = self.clock() - self._started
            if self._abandoned:
                log.warning("%s measurement returned after %.0f s, long after it was abandoned", self.kind, seconds)
            else:
                self._done = Outcome(self.kind, self._context, result, error, False, seconds)
            self._thread = None
        if self.on_done is not None:
            self.on_done()

    def abandon_in(self) -> float | None:
        """Seconds until a running measurement is given up (0: at the next poll); None when idle."""
        with self._lock:
            if self._thread is None or self._abandoned:
                return None
            return max(0.0, self._started + self.timeout - self.clock())

    def poll(self) -> Outcome[T, C] | None:
        """The finished (or just abandoned) measurement's outcome, once; None while it runs."""
        with self._lock:
            if self._done is not None:
                done, self._done = self._done, None
                return done
            if self._thread is not None and not self._abandoned and self.clock() - self._started > self.timeout:
                self._abandoned = True
                log.error("%s measurement still running after %.0f s: abandoned", self.kind, self.timeout)
                return Outcome(self.kind, self._context, None, None, True, self.clock() - self._started)
            return None

    def wait(self, timeout: float) -> None:
        """Give a running measurement up to ``timeout`` seconds to finish (at shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
