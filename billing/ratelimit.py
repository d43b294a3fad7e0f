"""Per-organization API rate limit (fixed one-minute windows) and daily request counts.

One Lua script does both in a single atomic step on Redis: it refuses once the
window holds `limit` requests and otherwise counts the request in the window
and in the day's usage counter. Concurrent requests therefore cannot overshoot
the limit, and every request that got through is counted once.

Windows and days come from Redis's clock (TIME), so web servers with slightly
different clocks still share one window per organization.

When Redis is unreachable the limiter falls back to a PER-PROCESS limit: each web
process counts in memory and allows the plan's limit divided by
RATE_LIMIT_OUTAGE_PROCESSES (default 2) a minute, so the total stays near the plan's
limit with that many web processes. Refusing every paying customer during a cache
outage would be worse than approximate limits, and serving unlimited traffic would let
one client take the capacity every other customer needs while the product is already
degraded. Those requests are not added to the day's usage. The outage is logged and
/readyz reports it. Without REDIS_URL (embedded mode) the same in-process limiter
counts the full limit.

Large limits are counted in leases. A plan allowing at least LEASE_MIN_LIMIT
requests a minute reserves up to limit/1000 requests (at most LEASE_MAX) per
Redis call, and each process serves its reservation from memory: one round trip
per lease instead of per request. Reservations are atomic, so the limit still
cannot be overshot; a process's unused reservation at the window's end is lost,
so an organization may be refused up to 0.1% early per web process, and the
day's count includes those reservations. Smaller limits (the free and pro
plans) are counted exactly, request by request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings
from redis.commands.core import Script

from accounts.models import Organization
from billing.entitlements import entitlements_for
from quantsaas.cache import counters_redis, counters_redis_for

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
USAGE_TTL_SECONDS = 8 * 24 * 3600  # kept long enough for a missed roll-up to catch up
KEY_PREFIX = "qs:billing"

LEASE_MIN_LIMIT = 2_000  # requests a minute from which requests are reserved in leases
LEASE_MAX = 64

# KEYS: none (keys are derived from the server clock inside the script).
# ARGV[1] prefix, ARGV[2] organization id, ARGV[3] limit, ARGV[4] window, ARGV[5] usage ttl,
# ARGV[6] requests to reserve (1 unless leasing).
# Returns {allowed (0|1), count in window, seconds until the window resets, granted}.
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
  return {0, count, reset, 0}
end
local grant = math.min(tonumber(ARGV[6]), limit - count)
count = redis.call('INCRBY', key, grant)
if count == grant then
  redis.call('EXPIRE', key, window * 2)
end
local day = math.floor(seconds / 86400)
local usage_key = ARGV[1] .. ':usage:api:' .. ARGV[2] .. ':' .. day
if redis.call('INCRBY', usage_key, grant) == grant then
  redis.call('EXPIRE', usage_key, tonumber(ARGV[5]))
end
return {1, count, reset, grant}
"""


def lease_size(limit: int) -> int:
    """Requests to reserve per Redis call for a plan allowing `limit` a minute."""
    if limit < LEASE_MIN_LIMIT:
        return 1
    return min(LEASE_MAX, limit // 1000)


@dataclass
class _Lease:
    limit: int
    count: int  # the window's count in Redis once this lease was reserved
    left: int  # reserved requests not served yet
    ends: float  # time.monotonic() at which the window ends


_leases: dict[int, _Lease] = {}
_leases_lock = threading.Lock()


def leases_forget() -> None:
    """Drop this process's leases and outage counts (tests start each case from Redis
    alone)."""
    with _leases_lock:
        _leases.clear()
    outage_limiter.forget()


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


# The one client for counters lives in the kernel, so accounts' per-address limits share
# it without importing billing (docs/architecture.md).
_redis_for = counters_redis_for
redis_client = counters_redis


@lru_cache(maxsize=4)
def _script_for(url: str) -> Script:
    return _redis_for(url).register_script(_LUA)


class _LocalLimiter:
    """The embedded-mode stand-in: same windows and counts, one process only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[tuple[int, int], int] = {}
        self.usage: dict[tuple[int, int], int] = {}

    def forget(self) -> None:
        with self._lock:
            self._windows.clear()

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
outage_limiter = _LocalLimiter()  # while Redis is unreachable (its own windows)


def rate_limit_hit(*, organization: Organization) -> RateLimitResult:
    """Count one API request for `organization` against its plan's per-minute limit."""
    limit = entitlements_for(organization=organization).requests_per_minute
    client = redis_client()
    if client is None:
        allowed, count, reset = local_limiter.hit(organization.pk, limit)
        return _result(allowed, limit, count, reset)
    want = lease_size(limit)
    if want > 1:
        leased = _lease_take(organization.pk, limit)
        if leased is not None:
            return leased
    try:
        script = _script_for(settings.REDIS_URL)
        allowed, count, reset, granted = script(
            args=[KEY_PREFIX, organization.pk, limit, WINDOW_SECONDS, USAGE_TTL_SECONDS, want]
        )
    except redis.RedisError:
        logger.warning("rate limiter: Redis unreachable, limiting per process", exc_info=True)
        share = max(1, limit // max(1, settings.RATE_LIMIT_OUTAGE_PROCESSES))
        allowed, count, reset = outage_limiter.hit(organization.pk, share)
        result = _result(allowed, share, count, reset)
        return RateLimitResult(
            result.allowed, share, result.remaining, result.reset_seconds, counted=False
        )
    left = int(granted) - 1 if allowed else 0
    if want > 1 and left > 0:
        with _leases_lock:
            _leases[organization.pk] = _Lease(
                limit=limit, count=int(count), left=left, ends=time.monotonic() + int(reset)
            )
    return _result(allowed, limit, int(count) - left, reset)


def _lease_take(organization_id: int, limit: int) -> RateLimitResult | None:
    """Serve one request from this process's lease, or None when it has none left."""
    now = time.monotonic()
    with _leases_lock:
        lease = _leases.get(organization_id)
        if lease is None or lease.left <= 0 or lease.limit != limit or now >= lease.ends:
            _leases.pop(organization_id, None)
            return None
        lease.left -= 1
        used = lease.count - lease.left
        reset = math.ceil(lease.ends - now)
    return _result(True, limit, used, reset)


def _result(allowed: int, limit: int, count: int, reset: int) -> RateLimitResult:
    return RateLimitResult(
        allowed=bool(allowed),
        limit=limit,
        remaining=max(0, limit - int(count)),
        reset_seconds=int(reset),
    )
