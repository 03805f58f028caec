"""Rate estimates for the throughput tests: megabits per second, and when an estimate is stable.

:class:`RateMeter` turns ``(time, bytes so far)`` samples into a running rate and says, by a
:class:`Stability` rule, when it is stable enough to stop a test early.  Pure: time is given.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass


def mbps(byte_count: float, seconds: float) -> float:
    """Megabits per second (10^6 bit/s) for ``byte_count`` bytes in ``seconds``."""
    return byte_count * 8 / seconds / 1e6


@dataclass(frozen=True)
class Stability:
    """When a rate estimate is stable enough to stop.

    The rate over a sliding window of ``window_s`` is evaluated every ``step_s``; the estimate
    is stable once ``count`` successive evaluations agree within ``tolerance`` (the highest is
    at most ``1 + tolerance`` times the lowest) and at least ``min_s`` has passed since the
    first byte.  The window has to slide past TCP's slow start and past the burst a token
    bucket lets through at the start before the evaluations can agree, so neither inflates
    the figure.  ``max_s`` ends a test whose rate never settles (a moving boat).
    """

    window_s: float = 0.5
    step_s: float = 0.1
    count: int = 4
    tolerance: float = 0.03
    min_s: float = 1.0
    max_s: float = 12.0

    def __post_init__(self) -> None:
        if not (self.window_s > 0 and self.step_s > 0 and self.count >= 2 and self.tolerance > 0):
            raise ValueError(f"impossible stability rule: {self}")

    @property
    def span_s(self) -> float:
        """The stretch of time the stable evaluations cover together."""
        return self.window_s + (self.count - 1) * self.step_s


class RateMeter:
    """Running rate estimate from ``(time, bytes so far)`` samples; pure, time is given.

    Byte counts between samples are taken to have arrived evenly.
    """

    def __init__(self, stability: Stability = Stability()) -> None:
        self.rule = stability
        self._times: list[float] = []
        self._totals: list[float] = []
        self._rates: list[float] = []  # window rates in bytes/s, one per evaluation
        self._next_eval: float | None = None

    def add(self, when: float, total_bytes: float) -> None:
        if self._times and when < self._times[-1]:
            raise ValueError("samples must come in time order")
        if self._times and total_bytes < self._totals[-1]:
            raise ValueError("a byte count cannot go down")
        if self._times and when == self._times[-1]:
            self._totals[-1] = total_bytes
        else:
            self._times.append(when)
            self._totals.append(total_bytes)
        rule = self.rule
        if self.elapsed < rule.window_s:
            return
        if self._next_eval is None:
            self._next_eval = when
        if when >= self._next_eval:
            self._rates.append((total_bytes - self._total_at(when - rule.window_s)) / rule.window_s)
            while self._next_eval <= when:
                self._next_eval += rule.step_s

    def _total_at(self, moment: float) -> float:
        times, totals = self._times, self._totals
        if moment <= times[0]:
            return totals[0]
        i = bisect.bisect_right(times, moment)
        if i >= len(times):
            return totals[-1]
        t0, t1 = times[i - 1], times[i]
        b0, b1 = totals[i - 1], totals[i]
        return b0 + (b1 - b0) * (moment - t0) / (t1 - t0)

    def __repr__(self) -> str:
        rates = " ".join(f"{r * 8 / 1e6:.3f}" for r in self._rates)
        return f"<RateMeter {self.elapsed:.2f} s, {self._totals[-1] if self._totals else 0:.0f} bytes, window rates (Mbit/s): {rates}>"

    @property
    def elapsed(self) -> float:
        """Seconds from the first sample to the last."""
        return self._times[-1] - self._times[0] if self._times else 0.0

    @property
    def stable(self) -> bool:
        rule = self.rule
        if self.elapsed < rule.min_s or len(self._rates) < rule.count:
            return False
        recent = self._rates[-rule.count:]
        low, high = min(recent), max(recent)
        return low > 0 and high <= low * (1 + rule.tolerance)

    def rate(self) -> float | None:
        """Bytes per second: over the stable span once stable, else over the last window
        (all there is, if shorter); ``None`` before two samples."""
        if len(self._times) < 2 or self.elapsed <= 0:
            return None
        span = self.rule.span_s if self.stable else self.rule.window_s
        span = min(span, self.elapsed)
        end = self._times[-1]
        return (self._totals[-1] - self._total_at(end - span)) / span
