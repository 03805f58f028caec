"""Throughput tests: which backend runs, and the common run (rate estimates: :mod:`agent.unit.measure.rate`).

Two backends measure the download and upload rate of the unit's link:

- ``http`` (:mod:`agent.unit.measure.http_speed`) against the operator's own speed server
  (:mod:`agent.centre.speed_server`).  It stops each direction as soon as its rate estimate
  is stable (:class:`~agent.unit.measure.rate.RateMeter`) and never asks for more than a byte cap.
- ``speedtest`` (:mod:`agent.unit.measure.speedtest_backend`): speedtest-cli used as a library,
  against Ookla's servers or a private "Speedtest Mini" server.  It always runs its full
  10 seconds per direction, whatever that costs.

Rates are payload goodput in megabits per second (10^6 bit/s): the application bytes moved,
as every speed test reports them, not the line rate with TCP/IP headers.

:func:`run_throughput` is what ``blankspot measure throughput`` and the agent call: it asks
the data budget first (:mod:`agent.unit.measure.usage`), reads the interface counters around the
test and records what the test cost in the usage ledger.  Failures of the link or the server
never raise: they come back as a :class:`~agent.shared.reading.Throughput` whose ``error`` says why.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable

from agent.shared.reading import Event, Throughput
from agent.unit.measure.rate import Stability

if TYPE_CHECKING:
    from agent.unit.measure.usage import Budget, CounterSample, InterfaceCounters, UsageLedger

log = logging.getLogger(__name__)

BACKENDS = ("http", "speedtest")
DEFAULT_CAP_BYTES = 10_000_000


# -- the common run: budget, counters, ledger -------------------------------------------------

@dataclass(frozen=True)
class ThroughputPlan:
    """One throughput test to run: which backend, where, and how many bytes it may cost."""

    backend: str = "http"
    target: str | None = None  # the speed server's URL; speedtest: None means Ookla's servers
    cap_bytes: int = DEFAULT_CAP_BYTES
    interface: str | None = None  # http: send over this interface only
    count_interface: str | None = None  # read this interface's counters around the test
    stability: Stability = field(default_factory=Stability)
    speedtest_seconds: float = 10.0  # speedtest backend: length of each direction (Ookla's is 10)
    speedtest_as_shipped: bool = False  # without the corrections of agent.unit.measure.speedtest_backend

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.backend == "http" and not self.target:
            raise ValueError("the http backend needs the speed server's URL")
        if self.cap_bytes <= 0:
            raise ValueError("cap_bytes must be positive")


def run_backend(plan: ThroughputPlan) -> Throughput:
    """Run the plan's backend once; never raises for a failure of the link or the server."""
    if plan.backend == "http":
        from agent.unit.measure.http_speed import HttpSpeedTest

        return HttpSpeedTest(plan.target or "", cap_bytes=plan.cap_bytes, stability=plan.stability,
                             interface=plan.interface).run()
    from agent.unit.measure.speedtest_backend import run_speedtest

    return run_speedtest(plan.target, seconds=plan.speedtest_seconds, as_shipped=plan.speedtest_as_shipped)


def run_throughput(
    plan: ThroughputPlan,
    ledger: "UsageLedger | None" = None,
    budget: "Budget | None" = None,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> Throughput | Event:
    """Ask the budget, run the test, count its bytes and record them in the ledger.

    Returns the throughput part, or a ``budget_skip`` event part when the test could break
    the daily or monthly limit (nothing is sent then).  ``bytes_used`` is the difference of
    ``plan.count_interface``'s counters when it is given and they are readable before and
    after (read once the interface has gone quiet, at most 3 s after the test: bytes still
    in flight when the test stopped count), else the backend's own count.  The counters see
    everything on the interface: TCP/IP headers, and any other traffic of the unit meanwhile.
    """
    from agent.unit.measure.usage import InterfaceCounters, budget_decision, expected_bytes, skip_event

    if budget is not None and ledger is not None and not budget.unlimited:
        decision = budget_decision(budget, ledger.totals(now()), expected_bytes(plan.backend, plan.cap_bytes, ledger))
        if not decision.allowed:
            log.info("throughput test skipped: %s", decision.reason)
            return skip_event(decision, what=f"{plan.backend} throughput test")
    counters = InterfaceCounters(plan.count_interface) if plan.count_interface else None
    before = counters.read() if counters else None
    result = run_backend(plan)
    after = _quiet_sample(counters) if counters and before else None
    if before is not None and after is not None:
        wire = after.bytes_since(before)
        log.info("throughput test: %s bytes by the backend's count, %s on %s's counters",
                 result.bytes_used, wire, plan.count_interface)
        result = replace(result, bytes_used=wire)
    if ledger is not None and result.bytes_used:
        ledger.record(f"throughput/{plan.backend}", result.bytes_used, now())
    return result


def _quiet_sample(counters: "InterfaceCounters", quiet_bytes: int = 3000, step_s: float = 0.3,
                  max_s: float = 3.0) -> "CounterSample | None":
    """The counters once less than ``quiet_bytes`` moved in ``step_s`` (or after ``max_s``)."""
    deadline = time.monotonic() + max_s
    sample = counters.read()
    while sample is not None and time.monotonic() < deadline:
        time.sleep(step_s)
        later = counters.read()
        if later is None:
            return sample
        if later.bytes_since(sample) < quiet_bytes:
            return later
        sample = later
    return sample
