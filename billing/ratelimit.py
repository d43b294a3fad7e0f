"""Per-organization API rate limit (fixed one-minute windows) and daily request counts.

One Lua script does both in a single atomic step on Redis: it refuses once the
window holds `limit` requests and otherwise counts the request in the window
and in the day's usage counter. Concurrent requests therefore cannot overshoot
the limit, and every request that got through is counted once.

Windows and days come from Redis's clock (TIME), so web servers with slightly
different clocks still share one window per organization.

When Redis is unreachable the limiter FAILS OPEN: the request is served and not
counted. The limit protects capacity and fairness, not security (auth is
separate), and refusing every paying customer during a cache outage would be
worse than a few minutes of unmetered traffic. The outage is logged and
/readyz reports it. Without REDIS_URL (embedded mode) an in-process limiter
with the same semantics is used.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings

from accounts.models import Organization
from billing.entitlements import entitlements_for

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
USAGE_TTL_SECONDS = 8 * 24 * 3600  # kept long enough for a missed roll-up to catch up
KEY_PREFIX = "qs:billing"

# KEYS: none (keys are derived from the server clock inside the script).
# ARGV[1] prefix, ARGV[2] organization id, ARGV[3] limit, ARGV[4] window, ARGV[5] usage ttl
# Returns {allowed (0|1), count in window, seconds until the window resets}.
_LUA = """
local now = redis.call('TIME')
local seconds = tonumber(now[1])
local window = tonumber(ARGV[4])
local window_start = seconds - (seconds % window)
local reset = window_start + window - seconds
local key = ARGV[1] .. ':rl:' .. ARGV[2] .. ':' .. window_start
local limit = tonumber(ARGV[3])
local count = tonumber(redis.call('GET', key) or '0')
if count >= limit then
  return {0, count, reset}
end
count = redis.call('INCR', key)
if count == 1 then
  redis.call('EXPIRE', key, window * 2)
end
local day = math.floor(seconds / 86400)
local usage_key = ARGV[1] .. ':usage:api:' .. ARGV[2] .. ':' .. day
if redis.call('INCR', usage_key) == 1 then
  redis.call('EXPIRE', usage_key, tonumber(ARGV[5]))
end
return {1, count, reset}
"""


@dataclass(frozen=True)
class RateLimitResult:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    counted: bool = True  # False when the limiter failed open

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }


@lru_cache(maxsize=4)
def _redis_for(url: str) -> redis.Redis:
    # Short timeouts: a hung Redis must cost a request milliseconds, not seconds.
    return redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)


def redis_client() -> redis.Redis | None:
    """The Redis that holds counters, or None in embedded mode (no REDIS_URL)."""
    return _redis_for(settings.REDIS_URL) if settings.REDIS_URL else None


@lru_cache(maxsize=4)
def _script_for(url: str):
    return _redis_for(url).register_script(_LUA)


class _LocalLimiter:
    """The embedded-mode stand-in: same windows and counts, one process only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[tuple[int, int], int] = {}
        self.usage: dict[tuple[int, int], int] = {}

    def hit(self, organization_id: int, limit: int) -> tuple[bool, int, int]:
        seconds = int(time.time())
        window_start = seconds - seconds % WINDOW_SECONDS
        reset = window_start + WINDOW_SECONDS - seconds
        with self._lock:
            for key in [k for k in self._windows if k[1] < window_start]:
                del self._windows[key]
            count = self._windows.get((organization_id, window_start), 0)
            if count >= limit:
                return False, count, reset
            count += 1
            self._windows[(organization_id, window_start)] = count
            day_key = (organization_id, seconds // 86400)
            self.usage[day_key] = self.usage.get(day_key, 0) + 1
        return True, count, reset


local_limiter = _LocalLimiter()


def rate_limit_hit(*, organization: Organization) -> RateLimitResult:
    """Count one API request for `organization` against its plan's per-minute limit."""
    limit = entitlements_for(organization=organization).requests_per_minute
    client = redis_client()
    if client is None:
        allowed, count, reset = local_limiter.hit(organization.pk, limit)
    else:
        try:
            script = _script_for(settings.REDIS_URL)
            allowed, count, reset = script(
                args=[KEY_PREFIX, organization.pk, limit, WINDOW_SECONDS, USAGE_TTL_SECONDS]
            )
        except redis.RedisError:
            logger.warning("rate limiter: Redis unreachable, failing open", exc_info=True)
            reset = WINDOW_SECONDS - int(time.time()) % WINDOW_SECONDS
            return RateLimitResult(True, limit, limit, reset, counted=False)
    return RateLimitResult(
        allowed=bool(allowed),
        limit=limit,
        remaining=max(0, limit - int(count)),
        reset_seconds=int(reset),
    )
