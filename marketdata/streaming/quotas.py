"""Stream quotas: concurrent connections per organization, and client message rate.

Connection slots live in Redis, one sorted set per organization: score = when
the slot expires (Redis server time, ms), member = ``<admitted>:<connection id>``,
where ``admitted`` is the 13-digit Redis time (ms) at which the slot was taken,
made strictly increasing per organization. So the members sorted as strings are
the connections in the order they were admitted, the same for every process.
One Lua script evicts expired members, counts, and adds only under the limit, so
twenty connections racing for five slots get exactly five, across every daphne
process. Open connections refresh their slots (a heartbeat); a crashed server
stops refreshing and its slots expire after SLOT_TTL_SECONDS.

After a downgrade, ``beyond`` names the slots past the plan's new limit in that
order (the newest); each process closes the ones it holds (streaming/recheck.py).
A slot admitted under a limit L always stays among the first L (members are only
ever added last), which lets a process skip the question for connections
admitted under a limit no larger than the current one.

If Redis is unreachable, connections are refused (closed 1013, try again later):
the stream's channel layer is that same Redis, so nothing could be delivered
anyway, and failing closed keeps a plan's connection limit exact.
Without REDIS_URL (embedded `make run`) the same rules run in process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

CLOSE_QUOTA = 4008  # connection quota exceeded (docs/api.md)
SLOT_TTL_SECONDS = 30
SLOT_REFRESH_SECONDS = 10
KEY_PREFIX = "qs:stream:slots"

# KEYS[1] slots key, KEYS[2] the organization's last admission time; ARGV[1] connection
# id, ARGV[2] limit, ARGV[3] ttl ms. Returns {acquired (0|1), slots in use, member}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[2]) then
  return {0, count, ''}
end
local admitted = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0') + 1)
local member = string.format('%013d', admitted) .. ':' .. ARGV[1]
redis.call('ZADD', KEYS[1], now + ttl, member)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SET', KEYS[2], admitted, 'PX', ttl)
return {1, count + 1, member}
"""

# KEYS[1] slots key, KEYS[2] last admission; ARGV[1] ttl ms; ARGV[2..] slot members.
# Refreshes only members still present (XX): a slot that expired meanwhile is not
# silently re-taken; those are returned, for the caller to take again under the limit.
_REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local missing = {}
for i = 2, #ARGV do
  if redis.call('ZADD', KEYS[1], 'XX', 'CH', now + ttl, ARGV[i]) == 0
     and not redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    missing[#missing + 1] = ARGV[i]
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return missing
"""

# KEYS[1] slots key; ARGV[1] member, ARGV[2] limit, ARGV[3] ttl ms. A slot lost under an
# open connection, taken again with its admission time (so the order stays) if the
# organization is under its limit. Returns 1 if held, 0 if not.
_RETAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""

# KEYS[1] slots key; ARGV[1] limit. The live members past the first `limit` in
# admission order (read only).
_BEYOND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
local limit = tonumber(ARGV[1])
local beyond = {}
if #members > limit then
  table.sort(members)
  for i = limit + 1, #members do
    beyond[#beyond + 1] = members[i]
  end
end
return beyond
"""


class QuotaUnavailable(Exception):
    """The quota store cannot be reached; the caller fails closed."""


def slots_key(organization_id: int) -> str:
    return f"{KEY_PREFIX}:{organization_id}"


def admitted_key(organization_id: int) -> str:
    return f"{KEY_PREFIX}:{organization_id}:admitted"


def slot_member(admitted_ms: int, connection_id: str) -> str:
    """Fixed-width time first, so members sort as strings in admission order."""
    return f"{admitted_ms:013d}:{connection_id}"


@dataclass(frozen=True)
class SlotResult:
    acquired: bool
    in_use: int
    member: str = ""  # the slot's name in the set; the connection's id from then on


class RedisSlots:
    """Connection slots in Redis. One instance per event loop (redis.asyncio pools are)."""

    def __init__(self, url: str, *, max_connections: int = 32) -> None:
        # A blocking pool: under a burst (hundreds of clients leaving at once) callers
        # wait for a free connection instead of failing, so every slot is released.
        # Stale pooled connections after a Redis restart are retried on fresh ones.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=20,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            health_check_interval=10,
        )
        self.client = aioredis.Redis(connection_pool=pool)
        self._acquire = self.client.register_script(_ACQUIRE)
        self._refresh = self.client.register_script(_REFRESH)
        self._retake = self.client.register_script(_RETAKE)
        self._beyond = self.client.register_script(_BEYOND)

    async def acquire(self, *, organization_id: int, connection_id: str, limit: int) -> SlotResult:
        try:
            acquired, in_use, member = await self._acquire(
                keys=[slots_key(organization_id), admitted_key(organization_id)],
                args=[connection_id, limit, SLOT_TTL_SECONDS * 1000],
            )
        except aioredis.RedisError as exc:
            raise QuotaUnavailable(str(exc)) from exc
        return SlotResult(acquired=bool(acquired), in_use=int(in_use), member=member.decode())

    async def refresh(self, *, organization_id: int, connection_ids: list[str]) -> list[str]:
        """Extend these slots; returns those no longer held (expired, or Redis restarted)."""
        if not connection_ids:
            return []
        missing = await self._refresh(
            keys=[slots_key(organization_id), admitted_key(organization_id)],
            args=[SLOT_TTL_SECONDS * 1000, *connection_ids],
        )
        return [m.decode() for m in missing]

    async def retake(self, *, organization_id: int, connection_id: str, limit: int) -> bool:
        """Hold a lost slot again if the organization is under `limit`."""
        held = await self._retake(
            keys=[slots_key(organization_id)],
            args=[connection_id, limit, SLOT_TTL_SECONDS * 1000],
        )
        return bool(held)

    async def beyond(self, *, organization_id: int, limit: int) -> list[str]:
        """The organization's slots past the first `limit` in admission order (newest)."""
        members = await self._beyond(keys=[slots_key(organization_id)], args=[limit])
        return [m.decode() for m in members]

    async def release(self, *, organization_id: int, connection_ids: list[str]) -> None:
        if connection_ids:
            await self.client.zrem(slots_key(organization_id), *connection_ids)

    async def in_use(self, *, organization_id: int) -> int:
        now_ms = int(time.time() * 1000)
        key = slots_key(organization_id)
        return await self.client.zcount(key, now_ms, "+inf")

    async def aclose(self) -> None:
        await self.client.aclose()


class LocalSlots:
    """The same semantics in process, for the embedded single-process mode."""

    def __init__(self) -> None:
        self._slots: dict[int, dict[str, float]] = {}
        self._admitted: dict[int, int] = {}

    def _live(self, organization_id: int) -> dict[str, float]:
        now = time.monotonic()
        slots = self._slots.setdefault(organization_id, {})
        for member in [m for m, expiry in slots.items() if expiry <= now]:
            del slots[member]
        return slots

    async def acquire(self, *, organization_id: int, connection_id: str, limit: int) -> SlotResult:
        slots = self._live(organization_id)
        if len(slots) >= limit:
            return SlotResult(acquired=False, in_use=len(slots))
        admitted = max(time.time_ns() // 1_000_000, self._admitted.get(organization_id, 0) + 1)
        self._admitted[organization_id] = admitted
        member = slot_member(admitted, connection_id)
        slots[member] = time.monotonic() + SLOT_TTL_SECONDS
        return SlotResult(acquired=True, in_use=len(slots), member=member)

    async def refresh(self, *, organization_id: int, connection_ids: list[str]) -> list[str]:
        slots = self._live(organization_id)
        missing = []
        for member in connection_ids:
            if member in slots:
                slots[member] = time.monotonic() + SLOT_TTL_SECONDS
            else:
                missing.append(member)
        return missing

    async def retake(self, *, organization_id: int, connection_id: str, limit: int) -> bool:
        slots = self._live(organization_id)
        if connection_id not in slots and len(slots) >= limit:
            return False
        slots[connection_id] = time.monotonic() + SLOT_TTL_SECONDS
        return True

    async def release(self, *, organization_id: int, connection_ids: list[str]) -> None:
        slots = self._slots.get(organization_id, {})
        for member in connection_ids:
            slots.pop(member, None)

    async def beyond(self, *, organization_id: int, limit: int) -> list[str]:
        return sorted(self._live(organization_id))[limit:]

    async def in_use(self, *, organization_id: int) -> int:
        return len(self._live(organization_id))

    async def aclose(self) -> None:
        return None


def slots_for_settings() -> RedisSlots | LocalSlots:
    return RedisSlots(settings.REDIS_URL) if settings.REDIS_URL else LocalSlots()


class TokenBucket:
    """Client message rate: `rate` per second with bursts up to `burst` (in process:
    a connection's messages all arrive at the process that holds it)."""

    def __init__(self, *, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


T = TypeVar("T")


async def gather_bounded(coros: list[Awaitable[T]], *, limit: int = 16) -> list[T | BaseException]:
    """Run coroutines with at most `limit` in flight (mass disconnects, refreshes)."""
    semaphore = asyncio.Semaphore(limit)

    async def run(coro: Awaitable[T]) -> T:
        async with semaphore:
            return await coro

    return await asyncio.gather(*(run(c) for c in coros), return_exceptions=True)
