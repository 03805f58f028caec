"""Backoff: waits that double after each failure, so that a persistent fault (a dead link, a
refused login, a modem that is gone) costs a bounded number of attempts, not a loop."""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Backoff:
    """Doubling waits from ``low`` up to ``high`` seconds, back to ``low`` after :meth:`reset`.

    With ``rng``, each wait is drawn in [w/2, w], so that many units that lost the same broker
    do not all come back in the same second; without, the waits are exact.
    """

    low: float
    high: float
    rng: random.Random | None = None
    failures: int = 0

    def next_delay(self) -> float:
        wait = min(self.high, self.low * (2 ** min(self.failures, 30)))
        self.failures += 1
        return wait if self.rng is None else wait / 2 + self.rng.uniform(0, wait / 2)

    def reset(self) -> None:
        self.failures = 0
