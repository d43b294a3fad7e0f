"""Recent history of every channel, for delayed plans that subscribe to a quiet channel.

A hub's delay line only holds what that hub received while it listened to a
channel. A delayed client subscribing to a channel nobody on its server was
watching would get nothing for the whole delay (15 minutes on the free plan).
So the publisher also appends each message (the exact ``seq``, ``ts`` and
``data`` it sent) to a per-channel Redis Stream, in the same pipeline for the
whole flush, trimmed by age (``MINID``, ``STREAM_REPLAY_SECONDS``) and by
length (``MAXLEN``, ``STREAM_REPLAY_MAXLEN``, a memory guard), both approximate
(whole radix-tree nodes: cheap), with a key TTL of the same age so a channel
that stops publishing frees its stream. The hub reads the range it is missing
once, when a delayed subscription arrives (``DelayLine.seed`` in hub.py).

Stream ids are Redis time; the message's own ``ts`` (publisher time) decides
everything, and reads widen their id range by ``CLOCK_MARGIN_MS`` for clocks
that differ. Without REDIS_URL (embedded mode) there is no replay store and a
delayed subscription waits out the delay as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from django.conf import settings

KEY_PREFIX = "qs:stream:replay"
CLOCK_MARGIN_MS = 5000
GUARD_EVERY = 100  # appends per channel between two length trims
TTL_RENEW_SECONDS = 30.0


def replay_key(channel: str) -> str:
    return f"{KEY_PREFIX}:{channel}"


@dataclass(frozen=True)
class ReplayEntry:
    seq: int
    ts: int
    data: Any

    @property
    def order(self) -> tuple[int, int]:
        """Publish order, across a publisher restart too (``seq`` restarts, ``ts`` goes on)."""
        return (self.ts, self.seq)


def _entry(fields: dict) -> ReplayEntry:
    return ReplayEntry(
        seq=int(fields[b"seq"]), ts=int(fields[b"ts"]), data=orjson.loads(fields[b"data"])
    )


class RedisReplay:
    """The per-channel streams. One instance per event loop (redis.asyncio pools are)."""

    def __init__(self, url: str, *, seconds: int, maxlen: int) -> None:
        # Bounded waits: a stalled Redis must not hold a flush or a subscription for long.
        self.client = aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.seconds, self.maxlen = seconds, maxlen
        self._guarded: dict[str, tuple[int, float]] = {}  # channel -> (appends, TTL renewed)

    async def append(self, messages: list[dict]) -> None:
        """Every message of one flush in one round trip (a non-transactional pipeline)."""
        keep_ms = self.seconds * 1000
        min_id = max(0, time.time_ns() // 1_000_000 - keep_ms)
        now = time.monotonic()
        pipe = self.client.pipeline(transaction=False)
        for message in messages:
            channel = message["channel"]
            key = replay_key(channel)
            data = orjson.dumps(message["data"])
            fields = {"seq": message["seq"], "ts": message["ts"], "data": data}
            pipe.xadd(key, fields, minid=min_id, approximate=True)
            # The length guard and the TTL need not be renewed with every message (each
            # costs as much as the XADD): the stream grows by at most GUARD_EVERY entries
            # past the cap, and the TTL is renewed long before it runs out.
            count, renewed = self._guarded.get(channel, (0, float("-inf")))
            if count % GUARD_EVERY == 0 or now - renewed >= TTL_RENEW_SECONDS:
                pipe.xtrim(key, maxlen=self.maxlen, approximate=True)
                pipe.pexpire(key, keep_ms)
                renewed = now
            self._guarded[channel] = (count + 1, renewed)
        await pipe.execute()

    async def read(
        self, channel: str, *, start_ms: int, end_ms: int | None, previous: bool
    ) -> tuple[ReplayEntry | None, list[ReplayEntry]]:
        """Entries published from about `start_ms` to `end_ms` (None: the newest), oldest first,
        and with `previous` the last one before them (a stateful channel's snapshot)."""
        key = replay_key(channel)
        low = max(0, start_ms - CLOCK_MARGIN_MS)
        high = "+" if end_ms is None else end_ms + CLOCK_MARGIN_MS
        pipe = self.client.pipeline(transaction=False)
        if previous:
            pipe.xrevrange(key, max=max(0, low - 1), min="-", count=1)
        pipe.xrange(key, min=low, max=high)
        results = await pipe.execute()
        before = [_entry(fields) for _, fields in results[0]] if previous else []
        entries = [_entry(fields) for _, fields in results[-1]]
        return (before[0] if before else None), entries

    async def aclose(self) -> None:
        await self.client.aclose()


def replay_for_settings() -> RedisReplay | None:
    if not settings.REDIS_URL:
        return None
    return RedisReplay(
        settings.REDIS_URL,
        seconds=settings.STREAM_REPLAY_SECONDS,
        maxlen=settings.STREAM_REPLAY_MAXLEN,
    )
