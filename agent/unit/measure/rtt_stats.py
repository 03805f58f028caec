"""From round-trip times to a latency reading's figures.  Pure.

``jitter_ms`` is the mean absolute difference between consecutive round trips, in the order
the probes were sent, over the probes that were answered (a lost probe is skipped, not
counted as a zero).  This is the RFC 3550 interarrival jitter without its 1/16 smoothing, so a
short series of probes is not dominated by its first samples.  Null with fewer than two answers.
"""
from __future__ import annotations

from typing import Sequence

from agent.shared.reading import Latency

DIGITS = 3  # microseconds, in milliseconds


def jitter_ms(rtts_ms: Sequence[float]) -> float | None:
    if len(rtts_ms) < 2:
        return None
    steps = [abs(b - a) for a, b in zip(rtts_ms, rtts_ms[1:])]
    return round(sum(steps) / len(steps), DIGITS)


def loss_pct(sent: int, received: int) -> float:
    """Percent of probes unanswered; 100 when nothing could be sent at all."""
    if sent <= 0:
        return 100.0
    return round(100.0 * (sent - received) / sent, DIGITS)


def summarize(target: str, method: str, sent: int, rtts_ms: Sequence[float | None],
              error: str | None = None) -> Latency:
    """The reading part for ``sent`` probes whose round trips are ``rtts_ms`` (in send order,
    ``None`` for a probe never answered; probes not listed were not answered either)."""
    answered = [r for r in rtts_ms if r is not None]
    if len(answered) > sent:
        raise ValueError(f"{len(answered)} answers to {sent} probes")
    if not answered:
        return Latency(target, method, sent, 0, loss_pct(sent, 0), error=error)
    return Latency(
        target=target,
        method=method,
        sent=sent,
        received=len(answered),
        loss_pct=loss_pct(sent, len(answered)),
        rtt_min_ms=round(min(answered), DIGITS),
        rtt_avg_ms=round(sum(answered) / len(answered), DIGITS),
        rtt_max_ms=round(max(answered), DIGITS),
        jitter_ms=jitter_ms(answered),
        error=error,
    )
