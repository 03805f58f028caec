"""The schedule, as a table: what is due for a unit in each state, mobile and fixed."""
from __future__ import annotations

import random
import threading
import time
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.unit.config import ScheduleConfig
from agent.unit.probe_runner import ProbeRunner
from agent.unit.schedule import Scheduler, UnitState

MOBILE = ScheduleConfig(mode="mobile", signal_interval=10, signal_distance=100, latency_interval=900,
                        throughput_interval=3600, throughput_min_quality="fair", stationary_speed=3,
                        scan_interval=3600)
FIXED = replace(MOBILE, mode="fixed", quiet_after_start=300, jitter=0.0)
CELL_A = (510, 10, "LTE", 0x1A2B301, 101)
CELL_B = (510, 10, "LTE", 0x1A2B402, 112)


def after_first_round(config: ScheduleConfig, **start: object) -> Scheduler:
    """A scheduler that has run everything once at t=0 (at the given state)."""
    s = Scheduler(config, random.Random(1))
    state = UnitState(now=0.0, **start)  # type: ignore[arg-type]
    for kind in ("signal", "latency", "throughput", "scan"):
        s.started(kind, state)
    return s


@pytest.mark.parametrize("state, expected", [
    (UnitState(now=5, distance_m=50, speed_kmh=20, cell=CELL_A, quality="good"), []),
    (UnitState(now=10, distance_m=50, speed_kmh=20, cell=CELL_A, quality="good"), ["signal"]),
    (UnitState(now=4, distance_m=120, speed_kmh=20, cell=CELL_A, quality="good"), ["signal"]),
    (UnitState(now=4, distance_m=50, speed_kmh=20, cell=CELL_B, quality="good"), ["latency"]),
    (UnitState(now=900, distance_m=50, speed_kmh=20, cell=CELL_A, quality="good"), ["signal", "latency"]),
    # throughput: only stationary, good enough signal, not more often than its interval
    (UnitState(now=3600, distance_m=50, speed_kmh=20, cell=CELL_A, quality="good"), ["signal", "latency"]),
    (UnitState(now=3600, distance_m=0, speed_kmh=1, cell=CELL_A, quality="good"), ["signal", "latency", "throughput"]),
    (UnitState(now=3600, distance_m=0, speed_kmh=1, cell=CELL_A, quality="poor"), ["signal", "latency"]),
    (UnitState(now=3000, distance_m=0, speed_kmh=1, cell=CELL_A, quality="excellent"), ["signal", "latency"]),
    (UnitState(now=3600, distance_m=0, speed_kmh=None, cell=CELL_A, quality="good"), ["signal", "latency"]),
    # scan: stationary in a blank spot
    (UnitState(now=3600, distance_m=0, speed_kmh=0.5, cell=None, quality="none"), ["signal", "latency", "scan"]),
    (UnitState(now=3600, distance_m=0, speed_kmh=25, cell=None, quality="none"), ["signal", "latency"]),
    (UnitState(now=3600, distance_m=0, speed_kmh=0.5, cell=None, quality=None), ["signal", "latency"]),
])
def test_mobile_policy(state: UnitState, expected: list[str]) -> None:
    s = after_first_round(MOBILE, cell=CELL_A)
    assert s.due(state) == expected


def test_mobile_starts_with_signal_and_latency() -> None:
    assert Scheduler(MOBILE).due(UnitState(now=0, speed_kmh=20)) == ["signal", "latency"]


def test_losing_service_is_not_a_cell_change() -> None:
    s = after_first_round(MOBILE, cell=CELL_A)
    assert "latency" not in s.due(UnitState(now=5, cell=None, quality="none"))


@pytest.mark.parametrize("now, expected", [
    (0, ["signal", "latency"]),            # costly kinds wait out the quiet start
    (299, ["signal", "latency"]),
    (300, ["signal", "latency", "throughput", "scan"]),
])
def test_fixed_policy_keeps_costly_measurements_out_of_the_first_minutes(now: float, expected: list[str]) -> None:
    assert Scheduler(FIXED).due(UnitState(now=now)) == expected


def test_fixed_policy_intervals_ignore_motion_and_signal() -> None:
    s = after_first_round(FIXED)
    assert s.due(UnitState(now=9, distance_m=5000, quality="none")) == []
    assert s.due(UnitState(now=3600, quality="poor")) == ["signal", "latency", "throughput", "scan"]


def test_scan_interval_zero_disables_scans() -> None:
    for config in (replace(MOBILE, scan_interval=0), replace(FIXED, scan_interval=0)):
        s = Scheduler(config)
        assert "scan" not in s.due(UnitState(now=10_000, speed_kmh=0, quality="none"))


@given(st.floats(0.0, 0.5), st.integers(0, 2**32))
def test_fixed_jitter_stays_within_its_fraction(jitter: float, seed: int) -> None:
    s = Scheduler(replace(FIXED, jitter=jitter), random.Random(seed))
    s.started("signal", UnitState(now=0))
    low, high = MOBILE.signal_interval * (1 - jitter), MOBILE.signal_interval * (1 + jitter)
    assert s.due(UnitState(now=high + 1e-6))[:1] == ["signal"]
    if low > 1e-6:
        assert "signal" not in s.due(UnitState(now=low - 1e-6))


# -- the runner --------------------------------------------------------------------------

def test_a_hung_probe_is_abandoned_and_blocks_only_its_own_kind() -> None:
    release = threading.Event()
    now = [0.0]
    hung = ProbeRunner("throughput", lambda: release.wait(10) and "late", timeout=5, clock=lambda: now[0])
    quick = ProbeRunner("signal", lambda: "ok", timeout=5, clock=lambda: now[0])
    assert hung.start("ctx") and quick.start("ctx")
    deadline = time.monotonic() + 5
    outcome = None
    while outcome is None and time.monotonic() < deadline:
        outcome = quick.poll()
    assert outcome is not None and outcome.result == "ok"
    assert hung.poll() is None
    now[0] = 6.0
    abandoned = hung.poll()
    assert abandoned is not None and abandoned.timed_out and abandoned.context == "ctx"
    assert hung.poll() is None, "reported once"
    assert not hung.start("again"), "no second measurement while the stuck one still runs"
    release.set()
    hung.wait(5)
    assert hung.poll() is None, "a result after abandonment is dropped"
    assert hung.start("again")
    hung.wait(5)


def test_a_probe_that_raises_becomes_an_error_outcome() -> None:
    def broken() -> None:
        raise RuntimeError("bug")

    runner = ProbeRunner("latency", broken, timeout=5)
    runner.start(None)
    runner.wait(5)
    outcome = runner.poll()
    assert outcome is not None and outcome.error == "RuntimeError: bug" and outcome.result is None


@pytest.mark.parametrize("now, kinds, expected", [
    (0.0, ("signal", "latency", "throughput", "scan"), 10.0),   # everything ran at 0: signal every 10 s
    (4.0, ("signal",), 6.0),
    (12.0, ("signal",), 0.0),                                   # overdue: now
    (4.0, ("latency",), 896.0),
    (4.0, ("throughput", "scan"), 3596.0),
    (4.0, (), None),                                            # nothing it could start
])
def test_a_fixed_probe_knows_when_its_next_measurement_is_due(now: float, kinds, expected) -> None:
    assert after_first_round(FIXED).next_in(UnitState(now=now), kinds) == expected


def test_a_fixed_probe_waits_out_the_quiet_start_before_costly_measurements() -> None:
    fresh = Scheduler(FIXED)
    assert fresh.next_in(UnitState(now=0.0), ("signal",)) == 0.0, "never run: due now"
    assert fresh.next_in(UnitState(now=20.0), ("throughput", "scan")) == 280.0


def test_on_the_move_any_moment_can_make_a_measurement_due() -> None:
    assert after_first_round(MOBILE).next_in(UnitState(now=4.0)) is None


def test_a_finished_measurement_calls_its_wake_up_and_a_running_one_says_when_it_is_given_up() -> None:
    now = [100.0]
    finished = threading.Event()
    release = threading.Event()
    runner = ProbeRunner("signal", lambda: release.wait(10) and "ok", timeout=30, clock=lambda: now[0])
    runner.on_done = finished.set
    assert runner.abandon_in() is None, "idle"
    runner.start(None)
    now[0] = 112.0
    assert runner.abandon_in() == 18.0
    release.set()
    assert finished.wait(5), "the loop is woken when the measurement ends"
    assert runner.poll().result == "ok" and runner.abandon_in() is None
