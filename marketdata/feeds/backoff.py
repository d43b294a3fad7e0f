"""Exponential backoff with jitter for reconnects.

Jitter matters: after an exchange outage every stream of every runner
reconnects at once; spreading the attempts avoids hammering the exchange (and
its rate limits) in lock-step.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, *, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None):
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security

    def next_delay(self) -> float:
        """The next delay: uniform in the upper half of min(cap, base * 2**attempt)."""
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0
