"""The systemd notification client and the watchdog that stops pinging when the loop hangs.

systemd's side is played by a real AF_UNIX datagram socket that the test binds, on a path
or in the abstract namespace, exactly where ``$NOTIFY_SOCKET`` points a service.

Required behaviour:
- READY=1, STATUS=..., STOPPING=1 arrive as sd_notify(3) datagrams of KEY=value lines;
- without ``$NOTIFY_SOCKET`` (not under systemd) everything is a silent no-op;
- an ``@name`` socket is the abstract namespace;
- WATCHDOG=1 goes out at half of ``$WATCHDOG_USEC`` while the main loop beats, and stops
  when the loop stops beating, so systemd's timeout fires and it restarts the service;
- a loop that is busy on purpose (a minutes-long operator scan) keeps being fed;
- a vanished socket is logged, never raised.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from agent.shared.polling import wait_until
from agent.shared.watchdog import (
    PingPolicy,
    SystemdNotifier,
    Watchdog,
    notify_address,
    watchdog_timeout,
)
from tests.support.systemd import FakeSystemd

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def systemd(tmp_path: Path):
    fake = FakeSystemd(str(tmp_path / "notify.sock"))
    yield fake
    fake.close()


@pytest.fixture
def abstract_systemd():
    fake = FakeSystemd(f"\0blankspot-test-{uuid.uuid4().hex}")
    yield fake
    fake.close()


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- pure parts ------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("", None),
    ("@", None),                       # an abstract name needs at least one character
    ("vsock:2:1234", None),            # newer systemd; not AF_UNIX
    ("relative/notify", None),
    ("/run/systemd/notify", "/run/systemd/notify"),
    ("@/org/freedesktop/systemd1/notify/42", "\0/org/freedesktop/systemd1/notify/42"),
])
def test_notify_socket_values(value: str, expected: str | None) -> None:
    assert notify_address(value) == expected


@pytest.mark.parametrize("environ, expected", [
    ({}, None),
    ({"WATCHDOG_USEC": ""}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "-5"}, None),
    ({"WATCHDOG_USEC": "thirty"}, None),
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "4242"}, 0.5),
    ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "1"}, None),   # meant for another process
])
def test_watchdog_timeout_from_environment(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_timeout(environ, pid=4242) == expected


def test_ping_policy_pings_every_interval_while_alive() -> None:
    policy = PingPolicy(interval=5, stale_after=10)
    assert policy.due(now=0, last_ping=None, alive_until=10)
    assert not policy.due(now=4.9, last_ping=0, alive_until=10)
    assert policy.due(now=5, last_ping=0, alive_until=10)
    assert not policy.due(now=10.1, last_ping=5, alive_until=10), "loop went silent: no ping"


def test_pings_stop_when_heartbeats_stop_and_resume_with_them() -> None:
    """A timeline on a manual clock: WatchdogSec=10 -> pings every 5 s; the loop beats
    until t=20 and then hangs; pings continue while its last beat is under 10 s old and
    then stop, so systemd's 10 s timer fires at the latest 10 s after the last ping."""
    clock = ManualClock()
    start = clock.now
    notifier = SystemdNotifier(None)
    watchdog = Watchdog(notifier, timeout=10, clock=clock)
    # a disabled notifier disables the watchdog: nothing to feed
    assert not watchdog.enabled

    sent: list[float] = []

    class Recorder(SystemdNotifier):
        def watchdog_ping(self) -> bool:
            sent.append(clock.now - start)
            return True

    watchdog = Watchdog(Recorder("/nonexistent"), timeout=10, clock=clock)
    for t in range(41):
        clock.now = start + t
        if t <= 20:
            watchdog.heartbeat()
        watchdog.tick()
    assert sent == [0, 5, 10, 15, 20, 25, 30]
    last_ping = sent[-1]
    assert last_ping - 20 <= 10, "no ping is sent more than stale_after after the last heartbeat"

    clock.now = start + 41
    watchdog.heartbeat()
    assert watchdog.tick() is True, "a loop that comes back is fed again at once"


def test_busy_loop_keeps_being_fed_for_the_time_it_announced() -> None:
    clock = ManualClock()
    start = clock.now
    sent: list[float] = []

    class Recorder(SystemdNotifier):
        def watchdog_ping(self) -> bool:
            sent.append(clock.now - start)
            return True

    watchdog = Watchdog(Recorder("/nonexistent"), timeout=10, clock=clock)
    with watchdog.busy(180):               # an AT+COPS=? scan may take three minutes
        for t in range(0, 200, 5):
            clock.now = start + t
            watchdog.tick()
    assert sent[-1] == 180, "fed up to the announced end of the busy period, not beyond"
    assert max(b - a for a, b in zip(sent, sent[1:])) == 5

    clock.now = start + 300
    with watchdog.busy(60):
        with watchdog.busy(5):
            pass
        clock.now = start + 350                # the outer busy period still holds
        assert watchdog.tick()
    clock.now = start + 361                    # 11 s after the last heartbeat (leaving busy)
    assert not watchdog.tick()


# -- the socket ------------------------------------------------------------------------------

def test_no_notify_socket_is_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    notifier = SystemdNotifier.from_environment()
    watchdog = Watchdog.from_environment(notifier)
    threads = threading.active_count()
    assert not notifier.enabled and not watchdog.enabled
    assert notifier.ready("up") is False
    assert notifier.status("fine") is False
    assert notifier.stopping() is False
    watchdog.start()
    watchdog.heartbeat()
    assert watchdog.tick() is False
    assert threading.active_count() == threads, "no thread without a watchdog"
    watchdog.stop()


def test_ready_status_stopping_reach_the_socket(systemd: FakeSystemd) -> None:
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": systemd.env_value})
    assert notifier.enabled
    assert notifier.ready("buffer: 12 readings waiting")
    assert notifier.status("uplink down\nretrying in 30 s")
    assert notifier.extend_timeout(45)
    assert notifier.stopping("draining")
    notifier.close()
    assert systemd.wait_for(4) == [
        "READY=1\nSTATUS=buffer: 12 readings waiting",
        "STATUS=uplink down retrying in 30 s",      # one line: a newline would start a new assignment
        "EXTEND_TIMEOUT_USEC=45000000",
        "STOPPING=1\nSTATUS=draining",
    ]


def test_abstract_socket(abstract_systemd: FakeSystemd) -> None:
    assert abstract_systemd.env_value.startswith("@")
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": abstract_systemd.env_value})
    assert notifier.ready()
    assert abstract_systemd.wait_for(1) == ["READY=1"]
    notifier.close()


def test_vanished_socket_is_logged_once_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier(str(tmp_path / "gone.sock"))
    with caplog.at_level(logging.WARNING, logger="agent.shared.watchdog"):
        assert notifier.ready() is False
        assert notifier.watchdog_ping() is False
    warnings = [r.getMessage() for r in caplog.records if r.name == "agent.shared.watchdog"]
    assert len(warnings) == 1 and "gone.sock" in warnings[0], warnings


def test_thread_feeds_a_healthy_loop_and_starves_a_hung_one(systemd: FakeSystemd) -> None:
    """WatchdogSec=1: while a loop thread beats, pings arrive at least every second; after
    the loop hangs, they stop within stale_after plus one check, and systemd's timer fires."""
    timeout = 1.0
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": systemd.env_value})
    watchdog = Watchdog.from_environment(notifier, {"WATCHDOG_USEC": str(int(timeout * 1e6))})
    assert watchdog.enabled and watchdog.policy == PingPolicy(interval=0.5, stale_after=1.0)
    hang = threading.Event()
    started = time.monotonic()

    def main_loop() -> None:
        while not hang.is_set():
            watchdog.heartbeat()
            time.sleep(0.02)

    loop = threading.Thread(target=main_loop, daemon=True)
    with watchdog:
        loop.start()
        assert wait_until(lambda: len(systemd.pings()) >= 4, 10), "a healthy loop is fed"
        hang.set()
        loop.join()
        hung_at = time.monotonic()
        # systemd's side: its timer fires once no ping has come for WatchdogSec.
        fired = wait_until(lambda: time.monotonic() - max(systemd.pings()) > timeout, 10, interval=0.02)
    notifier.close()
    pings = systemd.pings()
    healthy = [t for t in pings if t <= hung_at]
    gaps = [b - a for a, b in zip([started] + healthy, healthy)]
    after = [round(t - hung_at, 2) for t in pings if t > hung_at]
    print(f"\n{len(healthy)} pings in {hung_at - started:.1f} s of healthy loop, longest gap {max(gaps):.2f} s; "
          f"pings after the hang at +{after} s")
    assert len(healthy) >= 4
    assert max(gaps) < timeout, "systemd would have restarted a healthy agent"
    assert fired, "systemd's watchdog timer must fire for a hung loop"
    assert all(t <= 1.0 + 0.25 + 0.3 for t in after), "pinged long after the loop stopped beating"


HUNG_AGENT = """
import os, threading, time
from agent.shared.watchdog import SystemdNotifier, Watchdog
notifier = SystemdNotifier.from_environment()
watchdog = Watchdog.from_environment(notifier).start()
notifier.ready("taking readings")
deadline = time.monotonic() + 1.5
while time.monotonic() < deadline:
    watchdog.heartbeat()
    time.sleep(0.05)
notifier.status("about to hang")
threading.Event().wait()          # the main loop is stuck for good; the process lives on
"""


def test_a_hung_agent_process_gets_killed_like_systemd_would(systemd: FakeSystemd) -> None:
    """A real child process under a fake systemd: it announces READY=1, is fed while its
    loop runs, then its loop hangs while the process (and the pinging thread) stays alive.
    The fake systemd sees WATCHDOG=1 stop, waits WatchdogSec, and sends SIGABRT as
    systemd does; nothing keeps a hung agent alive."""
    timeout = 0.8
    env = dict(os.environ, NOTIFY_SOCKET=systemd.env_value, WATCHDOG_USEC=str(int(timeout * 1e6)),
               PYTHONPATH=str(ROOT))
    env.pop("WATCHDOG_PID", None)
    child = subprocess.Popen([sys.executable, "-c", HUNG_AGENT], env=env, cwd=ROOT)
    try:
        wait_until(lambda: any(m.startswith("READY=1") for _, m in systemd.messages), 10, interval=0.01)
        ready_at = next(t for t, m in systemd.messages if m == "READY=1\nSTATUS=taking readings")
        # systemd's side: after READY=1, every WATCHDOG=1 re-arms a timer of `timeout`.
        fired_at = None
        while time.monotonic() - ready_at < 15 and child.poll() is None:
            last = max([ready_at] + systemd.pings())
            if time.monotonic() - last > timeout:
                fired_at = time.monotonic()
                child.send_signal(signal.SIGABRT)
                break
            time.sleep(0.02)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    pings = systemd.pings()
    print(f"\nchild fed the watchdog {len(pings)} times; timer fired "
          f"{(fired_at or 0) - ready_at:.2f} s after READY=1; exit {child.returncode}")
    assert len(pings) >= 3, "the healthy loop must be fed"
    assert fired_at is not None and fired_at - ready_at < 1.5 + timeout + timeout + 1.0
    assert any(m == "STATUS=about to hang" for _, m in systemd.messages)
    assert child.returncode == -signal.SIGABRT
