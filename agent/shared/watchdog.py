"""Talking to systemd: readiness, status, and a watchdog that pings only while the loop lives.

systemd's notification protocol (sd_notify(3)) is a datagram of ``KEY=value`` lines sent to
the AF_UNIX socket named in ``$NOTIFY_SOCKET``; a name starting with ``@`` is in the
abstract namespace.  With ``WatchdogSec=`` in the unit, systemd sets ``$WATCHDOG_USEC``
and restarts the service when no ``WATCHDOG=1`` arrives for that long.

A watchdog is only worth having if a stuck agent stops pinging.  So the pings come from a
small thread, but only while the main loop keeps calling :meth:`Watchdog.heartbeat`:

    notifier = SystemdNotifier.from_environment()      # does nothing outside systemd
    watchdog = Watchdog.from_environment(notifier)     # does nothing without WatchdogSec
    watchdog.start()
    notifier.ready("taking readings")
    while not stop.is_set():
        watchdog.heartbeat()
        ...                                            # one iteration of the main loop
        with watchdog.busy(200):                       # an operator scan may take minutes
            modem.scan()
    notifier.stopping("draining the buffer")
    watchdog.stop()

Nothing here raises because systemd is absent or its socket went away: a unit that cannot
reach systemd still takes readings.  Failures are logged once.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)


def notify_address(value: str) -> str | None:
    """The socket address for a ``$NOTIFY_SOCKET`` value; None when it is not an AF_UNIX one.

    ``@name`` is the abstract namespace (``"\\0name"`` for the socket call); ``/path`` a
    file.  Other forms (``vsock:`` of newer systemd) are not supported.
    """
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def watchdog_timeout(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds after which systemd restarts a silent service; None when no watchdog is set.

    ``$WATCHDOG_PID``, when present, names the process the watchdog is meant for; any other
    process (a child that inherited the environment) has no watchdog to feed.
    """
    usec = environ.get("WATCHDOG_USEC", "").strip()
    if not usec:
        return None
    watchdog_pid = environ.get("WATCHDOG_PID", "").strip()
    if watchdog_pid and watchdog_pid != str(pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not a whole number of microseconds", usec)
        return None
    if value <= 0:
        return None
    return value / 1_000_000


def _one_line(text: str) -> str:
    # A newline would end the assignment and start a bogus one.
    return " ".join(text.split())


class SystemdNotifier:
    """Sends notifications to systemd; does nothing when ``address`` is None."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._failing = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        """The notifier for ``$NOTIFY_SOCKET``; a silent one when it is unset or unusable."""
        env = os.environ if environ is None else environ
        value = env.get("NOTIFY_SOCKET", "")
        if not value:
            return cls(None)
        address = notify_address(value)
        if address is None:
            log.warning("NOTIFY_SOCKET=%r is not an AF_UNIX socket; systemd will not hear from this process", value)
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments in one datagram; True when it was sent."""
        if self.address is None or not assignments:
            return False
        message = "\n".join(assignments).encode("utf-8")
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.sendto(message, self.address)
            except OSError as exc:
                if not self._failing:
                    log.warning("cannot notify systemd at %s: %s", self.address.replace("\0", "@", 1), exc)
                self._failing = True
                return False
            if self._failing:
                log.info("notifying systemd works again")
            self._failing = False
            return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete (Type=notify units count as started from here)."""
        return self.notify("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        """One line shown by ``systemctl status``."""
        return self.notify(f"STATUS={_one_line(text)}")

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown has begun."""
        return self.notify("STOPPING=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def watchdog_ping(self) -> bool:
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for ``seconds`` more before the start or stop timeout fires (a long drain)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1_000_000))}")

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


@dataclass(frozen=True)
class PingPolicy:
    """When to send ``WATCHDOG=1``.  Times are monotonic seconds.

    ``interval`` is how often to ping while healthy (half the watchdog timeout, as
    sd_watchdog_enabled(3) advises); the loop counts as healthy until ``alive_until``,
    which each heartbeat pushes to ``stale_after`` seconds ahead.
    """

    interval: float
    stale_after: float

    def healthy(self, now: float, alive_until: float) -> bool:
        return now <= alive_until

    def due(self, now: float, last_ping: float | None, alive_until: float) -> bool:
        if not self.healthy(now, alive_until):
            return False
        return last_ping is None or now - last_ping >= self.interval


class Watchdog:
    """Pings systemd's watchdog from a thread, only while heartbeats keep coming.

    ``timeout`` is the unit's WatchdogSec.  ``stale_after`` is how long the main loop may go
    without a heartbeat and still count as alive (default: ``timeout``); after that the
    pings stop and systemd restarts the service within ``timeout``.  A disabled watchdog
    (``timeout`` None) makes every method a cheap no-op.
    """

    def __init__(self, notifier: SystemdNotifier, timeout: float | None, stale_after: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.timeout = timeout if notifier.enabled else None
        self._clock = clock
        self.policy: PingPolicy | None = None
        if self.timeout is not None:
            self.policy = PingPolicy(interval=self.timeout / 2, stale_after=stale_after or self.timeout)
        now = clock()
        # Start-up counts as a heartbeat, so the first pings go out before the loop's first turn.
        self._last_beat = now
        self._busy_until = now
        self._last_ping: float | None = None
        self._stopped_pinging = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pings = 0

    @classmethod
    def from_environment(cls, notifier: SystemdNotifier, environ: Mapping[str, str] | None = None,
                         stale_after: float | None = None) -> Watchdog:
        env = os.environ if environ is None else environ
        return cls(notifier, watchdog_timeout(env, os.getpid()), stale_after)

    @property
    def enabled(self) -> bool:
        return self.policy is not None

    def heartbeat(self) -> None:
        """The main loop is alive; call once per iteration."""
        self._last_beat = self._clock()

    @contextlib.contextmanager
    def busy(self, seconds: float) -> Iterator[None]:
        """The loop will be quiet for up to ``seconds`` on purpose (a modem scan); not a hang."""
        previous = self._busy_until
        self._busy_until = max(previous, self._clock() + seconds)
        try:
            yield
        finally:
            self._busy_until = previous
            self.heartbeat()

    def alive_until(self) -> float:
        assert self.policy is not None
        return max(self._last_beat + self.policy.stale_after, self._busy_until)

    def tick(self) -> bool:
        """Ping now if the policy says so; True when a ping was sent."""
        if self.policy is None:
            return False
        now = self._clock()
        alive_until = self.alive_until()
        if not self.policy.healthy(now, alive_until):
            if not self._stopped_pinging:
                log.error("main loop silent for %.0f s: no longer feeding the systemd watchdog, "
                          "systemd will restart the agent", now - self._last_beat)
                self._stopped_pinging = True
            return False
        if self._stopped_pinging:
            log.warning("main loop alive again; feeding the systemd watchdog")
            self._stopped_pinging = False
        if not self.policy.due(now, self._last_ping, alive_until):
            return False
        self._last_ping = now
        if self.notifier.watchdog_ping():
            self.pings += 1
            return True
        return False

    def start(self) -> Watchdog:
        """Start the pinging thread (nothing happens when the watchdog is disabled)."""
        if self.policy is None or self._thread is not None:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="systemd-watchdog", daemon=True)
        self._thread.start()
        log.info("feeding the systemd watchdog every %.1f s while the main loop is alive "
                 "(timeout %.1f s)", self.policy.interval, self.timeout)
        return self

    def _run(self) -> None:
        assert self.policy is not None
        # Checking twice per interval keeps the longest gap between pings at 3/4 of the timeout.
        period = self.policy.interval / 2
        while True:
            self.tick()
            if self._stop.wait(period):
                return

    def stop(self) -> None:
        """Stop pinging (systemd no longer enforces the watchdog once the service is stopping)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
