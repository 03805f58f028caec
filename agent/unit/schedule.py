"""When each measurement runs: the mobile and fixed policies, as pure functions of the unit's state.

Mobile (boat, vehicle):
- ``signal`` every ``signal_interval`` or every ``signal_distance`` metres travelled,
  whichever comes first;
- ``latency`` on a change of serving cell, and every ``latency_interval``;
- ``throughput`` only when nearly stationary, the last signal is at least
  ``throughput_min_quality``, and at most every ``throughput_interval`` (the data budget is
  checked when it runs: a test the budget cannot afford becomes an event reading);
- ``scan`` (which other operator serves here?) when stationary in a blank spot, at most every
  ``scan_interval``.

Fixed (a probe at a kantor desa): each kind on its own interval, every interval drawn with
``jitter`` so a fleet does not measure in lockstep, and the costly kinds (throughput, scan)
never within ``quiet_after_start`` of the agent starting: a unit rebooting in a loop on
flaky power must not spend its month's quota in a day.

Times are seconds on a monotonic clock, never wall time, so a clock step changes nothing.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from agent.shared.quality import quality_at_least
from agent.unit.config import ScheduleConfig

KINDS = ("signal", "latency", "throughput", "scan")
COSTLY = ("throughput", "scan")


@dataclass(frozen=True)
class UnitState:
    """What the policy looks at; ``now`` is monotonic seconds since the agent started."""

    now: float
    distance_m: float = 0.0           # odometer since start
    speed_kmh: float | None = None    # None: no fix
    cell: tuple | None = None         # serving cell identity of the last signal reading
    quality: str | None = None        # quality of the last signal reading (None: unknown or modem error)


@dataclass
class _Last:
    at: float
    distance_m: float
    cell: tuple | None


@dataclass
class Scheduler:
    """Says which measurements are due; ``started`` records that one began."""

    config: ScheduleConfig
    rng: random.Random = field(default_factory=random.Random)
    _last: dict[str, _Last] = field(default_factory=dict)
    _wait: dict[str, float] = field(default_factory=dict)  # fixed mode: this round's jittered interval

    def interval(self, kind: str) -> float:
        c = self.config
        return {"signal": c.signal_interval, "latency": c.latency_interval,
                "throughput": c.throughput_interval, "scan": c.scan_interval}[kind]

    def due(self, state: UnitState) -> list[str]:
        policy = self._mobile if self.config.mode == "mobile" else self._fixed
        return [kind for kind in KINDS if policy(kind, state)]

    def started(self, kind: str, state: UnitState) -> None:
        self._last[kind] = _Last(state.now, state.distance_m, state.cell)
        base = self.interval(kind)
        j = self.config.jitter if self.config.mode == "fixed" else 0.0
        self._wait[kind] = base * (1 + self.rng.uniform(-j, j))

    def next_in(self, state: UnitState, kinds: tuple[str, ...] | list[str] = KINDS) -> float | None:
        """Fixed mode: seconds until the first of ``kinds`` is due (0: now).  Mobile mode: None,
        since a distance travelled or a new serving cell can make one due at any moment."""
        if self.config.mode == "mobile":
            return None
        c = self.config
        soonest: float | None = None
        for kind in kinds:
            if kind == "scan" and c.scan_interval <= 0:
                continue
            elapsed = self._elapsed(kind, state)
            wait = 0.0 if elapsed is None else self._wait[kind] - elapsed
            if kind in COSTLY:
                wait = max(wait, c.quiet_after_start - state.now)
            soonest = wait if soonest is None else min(soonest, wait)
        return None if soonest is None else max(0.0, soonest)

    def _elapsed(self, kind: str, state: UnitState) -> float | None:
        last = self._last.get(kind)
        return None if last is None else state.now - last.at

    def _mobile(self, kind: str, state: UnitState) -> bool:
        c = self.config
        last = self._last.get(kind)
        elapsed = self._elapsed(kind, state)
        stationary = state.speed_kmh is not None and state.speed_kmh < c.stationary_speed
        if kind == "signal":
            return last is None or elapsed >= c.signal_interval or \
                state.distance_m - last.distance_m >= c.signal_distance
        if kind == "latency":
            if last is None:
                return True
            changed = state.cell is not None and last.cell is not None and state.cell != last.cell
            return changed or elapsed >= c.latency_interval
        if kind == "throughput":
            return stationary and quality_at_least(state.quality, c.throughput_min_quality) and \
                (last is None or elapsed >= c.throughput_interval)
        if kind == "scan":
            return c.scan_interval > 0 and stationary and state.quality == "none" and \
                (last is None or elapsed >= c.scan_interval)
        raise ValueError(kind)

    def _fixed(self, kind: str, state: UnitState) -> bool:
        c = self.config
        if kind == "scan" and c.scan_interval <= 0:
            return False
        if kind in COSTLY and state.now < c.quiet_after_start:
            return False
        elapsed = self._elapsed(kind, state)
        return elapsed is None or elapsed >= self._wait[kind]
