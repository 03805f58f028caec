"""DeliveryTracker: which acknowledged readings to send again, decided from the centre's confirmations.

A reading the broker acknowledged may still never reach the centre's database: the broker
restarted before saving it, or forwarded it to nobody.  The collectors publish what the
database holds (:class:`agent.shared.protocol.Confirmation`); this policy turns those into re-sends
without ever sending the backlog twice for nothing:

- **Overtaken.** When a confirmation covers a reading acknowledged at time *t*, the centre has
  worked through what the unit sent up to about *t*.  A reading acknowledged before *t*, still
  not covered ``grace`` after its own acknowledgement, is missing: it is sent again (at once
  when the confirmation comes late enough, else once its grace is over, without waiting for
  the next confirmation).  ``grace`` allows for a second collector of a shared group that is
  a little behind.
- **Silence.** When nothing new has been confirmed for ``probe_after`` while readings wait, the
  centre may be down (then the broker queues what was sent, and sending it again would only
  pay for it twice) or the last batches were lost.  Only the *oldest* waiting batch is sent
  again, as a probe: once the centre confirms it, the rule above finds the rest.
- Each further re-send of a reading, and each further probe, waits twice as long, up to
  ``max_wait``: a persistent fault never becomes a loop on a metered SIM.

Pure: times are passed in (monotonic seconds), nothing here touches the buffer or the network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from agent.shared.protocol import Confirmation

MAX_WAIT_S = 6 * 3600.0


@dataclass
class _Sent:
    seqs: list[int]
    acked: float
    attempt: int


class DeliveryTracker:
    """Readings acknowledged by the broker and not yet confirmed; see the module docstring."""

    def __init__(self, grace: float, probe_after: float, max_wait: float = MAX_WAIT_S, now: float = 0.0) -> None:
        self.grace = grace
        self.probe_after = probe_after
        self.max_wait = max(max_wait, grace, probe_after)
        self._sent: list[_Sent] = []
        self._attempts: dict[int, int] = {}  # seqs sent again, and how often
        self._last_progress = now
        self._probes = 0
        self._frontier: float | None = None  # latest acknowledgement time a confirmation covered
        self._bound = 0  # the last confirmation's bound: it says nothing above
        self.resent = 0  # readings handed back for sending again, in all

    # -- what happened -----------------------------------------------------------------

    def acknowledged(self, seqs: Iterable[int], now: float) -> None:
        """The broker acknowledged these readings (or they were found so after a restart)."""
        items = sorted(seqs)
        if not items:
            return
        if not self._sent:
            self._last_progress = now  # the silence clock starts with the first reading waiting
        attempt = max((self._attempts.get(seq, 0) for seq in items), default=0)
        self._sent.append(_Sent(items, now, attempt))

    def confirmed(self, confirmation: Confirmation, now: float) -> list[int]:
        """Apply a confirmation the buffer accepted; returns the seqs to send again."""
        frontier: float | None = None
        kept: list[_Sent] = []
        for sent in self._sent:
            remaining = [seq for seq in sent.seqs if not confirmation.covers(seq)]
            if len(remaining) < len(sent.seqs):
                frontier = sent.acked if frontier is None else max(frontier, sent.acked)
                for seq in sent.seqs:
                    self._attempts.pop(seq, None)
            if remaining:
                sent.seqs = remaining
                kept.append(sent)
        self._sent = kept
        if frontier is None:
            return []
        self._last_progress = now
        self._probes = 0
        self._frontier = frontier if self._frontier is None else max(self._frontier, frontier)
        self._bound = confirmation.bound
        return self._overtaken(lambda sent: sent.acked < frontier - self._wait(sent.attempt))

    def due(self, now: float) -> list[int]:
        """Seqs to send again now that time has passed since the last confirmation, or []."""
        if not self._sent:
            return []
        # Overtaken, and its own wait is over: the last confirmation covered readings the broker
        # acknowledged after these, and they have had their grace since (confirmations are
        # rate-limited, so the next one may be minutes away).
        if self._frontier is not None:
            frontier = self._frontier
            back = self._overtaken(lambda sent: sent.acked < frontier and now - sent.acked >= self._wait(sent.attempt))
            if back:
                return back
        wait = min(self.max_wait, self.probe_after * (2 ** min(self._probes, 30)))
        if now - self._last_progress < wait:
            return []
        # The batch acknowledged longest ago whose own wait is over: a reading the centre never
        # gets is probed with doubling waits too, however often other readings make progress.
        ready = [sent for sent in self._sent if now - sent.acked >= self._wait(sent.attempt)]
        if not ready:
            return []
        self._probes += 1
        self._last_progress = now
        return self._give_back(ready[:1])

    def _overtaken(self, due: Callable[[_Sent], bool]) -> list[int]:
        """Give back the part of each ``due`` batch the last confirmation speaks of.

        Above its bound the centre may simply not have got that far (it lowers top when it
        lists many holes), so those seqs keep waiting.
        """
        overtaken: list[_Sent] = []
        waiting: list[_Sent] = []
        for sent in self._sent:
            below = [seq for seq in sent.seqs if seq <= self._bound]
            if not below or not due(sent):
                waiting.append(sent)
                continue
            above = [seq for seq in sent.seqs if seq > self._bound]
            if above:
                waiting.append(_Sent(above, sent.acked, sent.attempt))
            overtaken.append(_Sent(below, sent.acked, sent.attempt))
        self._sent = waiting + overtaken
        return self._give_back(overtaken)

    def reopened(self, seqs: Iterable[int]) -> None:
        """The buffer made these pending again by itself (the centre lost them): forget them here."""
        gone = set(seqs)
        if gone:
            self._sent = [s for s in ([_Sent([q for q in s.seqs if q not in gone], s.acked, s.attempt)
                                       for s in self._sent]) if s.seqs]

    # -- inspection ----------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        return sum(len(sent.seqs) for sent in self._sent)

    def next_check(self, now: float) -> float | None:
        """When :meth:`due` may next return something (monotonic), or None with nothing waiting."""
        if not self._sent:
            return None
        return self._last_progress + min(self.max_wait, self.probe_after * (2 ** min(self._probes, 30)))

    def next_due(self, now: float) -> float | None:
        """The earliest time (monotonic) :meth:`due` may return seqs it does not return at ``now``.

        Unlike :meth:`next_check` this includes the overtaken batches' own graces, so a
        caller that sleeps until then misses no re-send; None with nothing waiting.
        """
        if not self._sent:
            return None
        times: list[float] = []
        if self._frontier is not None:
            frontier = self._frontier
            times.extend(sent.acked + self._wait(sent.attempt) for sent in self._sent
                         if sent.acked < frontier and any(seq <= self._bound for seq in sent.seqs))
        # The silence rule needs both its own wait over and one batch's wait over.
        silence = self.next_check(now)
        assert silence is not None
        first_ready = min(sent.acked + self._wait(sent.attempt) for sent in self._sent)
        times.append(max(silence, first_ready))
        later = [t for t in times if t > now]
        return min(later) if later else None

    # -- internals -----------------------------------------------------------------------

    def _wait(self, attempt: int) -> float:
        return min(self.max_wait, self.grace * (2 ** min(attempt, 30)))

    def _give_back(self, batches: list[_Sent]) -> list[int]:
        seqs: list[int] = []
        for sent in batches:
            self._sent.remove(sent)
            for seq in sent.seqs:
                self._attempts[seq] = sent.attempt + 1
            seqs.extend(sent.seqs)
        self.resent += len(seqs)
        return sorted(seqs)
