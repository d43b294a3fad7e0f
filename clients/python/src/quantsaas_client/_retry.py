"""How long to wait before trying again: the server's word first, then jittered backoff.

The server says how long in ``Retry-After`` (seconds or an HTTP date) on 429,
and ``RateLimit-Reset`` (seconds until the window resets) on every answer.
Without either, exponential backoff with jitter, so a fleet of clients that
failed together does not come back together.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({429, 502, 503, 504})


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def _seconds(value: str | None, *, now: float | None = None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def server_wait(
    headers: Mapping[str, str], *, rate_limited: bool = True, now: float | None = None
) -> float | None:
    """Seconds the server asked us to wait: Retry-After, else (on a 429) RateLimit-Reset.

    Every answer carries RateLimit-Reset, so it only says "wait" when the answer
    is a rate-limit refusal; a 503's RateLimit-Reset is unrelated to the outage.
    """
    wait = _seconds(_header(headers, "Retry-After"), now=now)
    if wait is None and rate_limited:
        wait = _seconds(_header(headers, "RateLimit-Reset"), now=now)
    return wait


def rate_limit_exhausted(headers: Mapping[str, str]) -> float | None:
    """Seconds until the window resets when this answer used the last request of it."""
    remaining = _header(headers, "RateLimit-Remaining")
    if remaining is None:
        return None
    try:
        if int(float(remaining)) > 0:
            return None
    except ValueError:
        return None
    return _seconds(_header(headers, "RateLimit-Reset"))


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with "equal jitter": half fixed, half random.

    Half fixed keeps a floor under the wait (a server just restarting is not
    hammered); half random spreads a fleet of clients apart.
    """

    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.base * (2.0 ** max(0, attempt)))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


@dataclass(frozen=True)
class RetryPolicy:
    """When the REST client tries again, and for how long it is willing to wait.

    ``max_retries`` counts retries after the first attempt. A server wait above
    ``max_wait`` is not slept through: the error is raised at once, carrying
    ``retry_after``, so a program decides itself rather than hanging.
    ``throttle`` waits out an exhausted rate-limit window before the next
    request instead of spending a request on a 429.
    """

    max_retries: int = 5
    backoff: Backoff = Backoff()
    max_wait: float = 60.0
    throttle: bool = True
    jitter: float = 0.1  # added to a server wait, as a fraction of it

    def wait_for(
        self,
        attempt: int,
        headers: Mapping[str, str],
        *,
        status: int = 429,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds before retry number ``attempt`` (0-based), or None to give up."""
        if attempt >= self.max_retries:
            return None
        wait = server_wait(headers, rate_limited=status == 429)
        if wait is None:
            return self.backoff.delay(attempt, rng=rng)
        if wait > self.max_wait:
            return None
        return wait + (rng or random).uniform(0, wait * self.jitter)


NO_RETRIES = RetryPolicy(max_retries=0, throttle=False)
