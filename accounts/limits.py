"""Abuse limits: fixed-window counters in Redis for actions that are not API quota.

Invitations sent, unauthenticated API calls per client address, webhook
deliveries that fail verification. One Lua script counts and decides in a single
atomic step, so concurrent requests cannot overshoot a limit; windows come from
Redis's clock, so every process shares one window.

A hit can be refunded (`limit_refund`): callers that reserve a slot before
knowing whether the request is abusive (an API key not yet looked up) give it
back once it proved legitimate, so only failures stay counted.

When Redis is unreachable (or absent, in embedded mode) each process counts on
its own with the same windows: a limit per process rather than none, because
these limits guard against abuse, where failing open would be the attacker's win.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import redis
from redis.commands.core import Script

from quantsaas.cache import counters_redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "qs:limit"

# KEYS[1] the counter's key without its window; ARGV[1] limit, ARGV[2] window seconds.
# Returns {allowed (0|1), count in window, seconds until the window resets}.
_LUA = """
local now = tonumber(redis.call('TIME')[1])
local window = tonumber(ARGV[2])
local start = now - (now % window)
local key = KEYS[1] .. ':' .. start
local count = tonumber(redis.call('GET', key) or '0')
if count >= tonumber(ARGV[1]) then
  return {0, count, start + window - now}
end
count = redis.call('INCR', key)
if count == 1 then
  redis.call('EXPIRE', key, window * 2)
end
return {1, count, start + window - now}
"""

# KEYS[1] as above; ARGV[1] window seconds. Gives back one hit of the current window.
_REFUND_LUA = """
local now = tonumber(redis.call('TIME')[1])
local window = tonumber(ARGV[1])
local key = KEYS[1] .. ':' .. (now - (now % window))
if tonumber(redis.call('GET', key) or '0') > 0 then
  redis.call('DECR', key)
end
return 1
"""


@dataclass(frozen=True)
class LimitResult:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        """The same RateLimit-* headers the per-plan limiter answers with."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }


class _LocalWindows:
    """The per-process fallback: the same fixed windows, counted in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = {}

    def hit(self, key: str, limit: int, window: int) -> tuple[bool, int, int]:
        now = int(time.time())
        start = now - now % window
        with self._lock:
            if len(self._counts) > 100_000:  # bounded: drop windows that have ended
                for stale in [k for k in self._counts if k[1] + 2 * window < now]:
                    del self._counts[stale]
            count = self._counts.get((key, start), 0)
            if count >= limit:
                return False, count, start + window - now
            self._counts[(key, start)] = count + 1
            return True, count + 1, start + window - now

    def refund(self, key: str, window: int) -> None:
        now = int(time.time())
        with self._lock:
            slot = (key, now - now % window)
            if self._counts.get(slot, 0) > 0:
                self._counts[slot] -= 1

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


local_windows = _LocalWindows()


def _redis() -> redis.Redis | None:
    return counters_redis()  # the one client for counters


_scripts: dict[int, tuple[Script, Script]] = {}


def _scripts_for(client: redis.Redis) -> tuple[Script, Script]:
    scripts = _scripts.get(id(client))
    if scripts is None:
        scripts = _scripts[id(client)] = (
            client.register_script(_LUA),
            client.register_script(_REFUND_LUA),
        )
    return scripts


def limit_hit(*, bucket: str, limit: int, window_seconds: int) -> LimitResult:
    """Count one event in `bucket`; refused (and not counted) once the window is full."""
    key = f"{KEY_PREFIX}:{bucket}"
    client = _redis()
    try:
        if client is None:
            raise redis.ConnectionError("no REDIS_URL")
        script = _scripts_for(client)[0]
        allowed, count, reset = script(keys=[key], args=[limit, window_seconds])
    except redis.RedisError as exc:
        if client is not None:
            logger.warning("abuse limit %s: Redis unreachable, counting per process: %s", key, exc)
        allowed, count, reset = local_windows.hit(key, limit, window_seconds)
    return LimitResult(
        allowed=bool(allowed),
        limit=limit,
        remaining=max(0, limit - int(count)),
        reset_seconds=max(1, int(reset)),
    )


def limit_refund(*, bucket: str, window_seconds: int) -> None:
    """Give back one hit of the current window (the request proved legitimate)."""
    key = f"{KEY_PREFIX}:{bucket}"
    client = _redis()
    try:
        if client is None:
            raise redis.ConnectionError("no REDIS_URL")
        _scripts_for(client)[1](keys=[key], args=[window_seconds])
    except redis.RedisError:
        local_windows.refund(key, window_seconds)
