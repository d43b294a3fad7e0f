"""Every channel's messages, in a Redis Stream per channel: the live path, resume and replay.

The feed runner that owns a channel appends each message (its ``seq``, publish
time ``ts``, record count ``n`` and ``data`` as JSON bytes) to
``qs:stream:replay:<channel>``, one pipeline per flush. Every web process's hub
reads the streams of the channels its clients want with one blocking ``XREAD``
(``StreamReader``), so:

- whatever piled up while a process was busy arrives in one read, and the hub
  coalesces it into fewer frames (hub.py): latency follows load;
- nothing is dropped between the feed and a hub (no channel capacity), and a
  hub that lost Redis for a while carries on from its cursor when it returns;
- a reconnecting client's missed messages are still there (``after_seq``), with
  the same ``seq``, for the retention window;
- delayed plans read what their process did not hear (``between``).

Streams are trimmed by age (``MINID``, ``STREAM_REPLAY_SECONDS``) and by length
(``MAXLEN``, ``STREAM_REPLAY_MAXLEN``, a memory guard), both approximate (whole
radix-tree nodes: cheap), with a key TTL of the same age so a channel that stops
publishing frees its stream. Stream ids are Redis time; ``seq`` and ``ts`` are the
publisher's and decide everything else. ``data`` is kept as JSON bytes end to end:
frames are built around it without parsing it.

Without REDIS_URL (embedded mode) ``LocalStore`` keeps the same history in
process, where the feed runner shares daphne's event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict, cast

import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT, KeyT, StreamIdT

KEY_PREFIX = "qs:stream:replay"
STATE_PREFIX = "qs:stream:state"  # a book channel's full state, with its seq (books.py)
KEYFRAME_PREFIX = "qs:stream:keyframes"  # a book's full state about once a second
KEYFRAME_EVERY_MS = 1000
CLOCK_MARGIN_MS = 5000
GUARD_EVERY = 100  # appends per channel between two length trims
TTL_RENEW_SECONDS = 30.0
RESUME_PAGE = 1000  # entries per XRANGE while reading a resume range


# A stream entry as our clients read it (bytes: no decode_responses). redis-py types
# replies for every protocol and decoding at once (ids and fields may be None), so the
# replies are cast to this, at no cost, where they are read.
StreamRow = tuple[bytes, dict[bytes, bytes]]


class PublishedMessage(TypedDict):
    """One message as the publisher hands it to ``append`` (feeds/publish.py)."""

    channel: str
    seq: int
    ts: int
    records: int
    data: bytes  # JSON
    views: NotRequired[dict[int, bytes]]  # a book delta's smaller depths (books.py)
    state: NotRequired[bytes]  # a book's full state after the delta (JSON)


def replay_key(channel: str) -> str:
    return f"{KEY_PREFIX}:{channel}"


def state_key(channel: str) -> str:
    return f"{STATE_PREFIX}:{channel}"


def keyframe_key(channel: str) -> str:
    return f"{KEYFRAME_PREFIX}:{channel}"


def channel_of(key: bytes | str) -> str:
    key = key.decode() if isinstance(key, bytes) else key
    return key[len(KEY_PREFIX) + 1 :]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One published message as stored: ``data`` is its JSON text, never parsed here."""

    seq: int
    ts: int
    records: int
    data: bytes
    id: str = "0-0"
    views: dict[int, bytes] | None = None  # a book delta's smaller depths (books.py)

    @property
    def order(self) -> tuple[int, int]:
        """Publish order, across a publisher restart too (``seq`` may restart, ``ts`` goes on)."""
        return (self.ts, self.seq)


def _stored(entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> StoredMessage:
    views = None
    if b"v10" in fields:
        views = {int(k[1:]): v for k, v in fields.items() if k[:1] == b"v" and k[1:].isdigit()}
    return StoredMessage(
        seq=int(fields[b"seq"]),
        ts=int(fields[b"ts"]),
        records=int(fields.get(b"n", 1)),
        data=fields[b"data"],
        id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
        views=views,
    )


@dataclass(frozen=True, slots=True)
class BookState:
    """A book channel's full state (JSON) after message `seq`."""

    seq: int
    ts: int
    data: bytes


def _book_state(fields: Mapping[bytes, bytes] | None) -> BookState | None:
    if not fields or b"seq" not in fields:
        return None
    return BookState(seq=int(fields[b"seq"]), ts=int(fields[b"ts"]), data=fields[b"data"])


def _message_fields(message: PublishedMessage) -> dict[FieldT, EncodableT]:
    fields: dict[FieldT, EncodableT] = {
        "seq": message["seq"],
        "ts": message["ts"],
        "n": message["records"],
        "data": message["data"],
    }
    for depth, raw in (message.get("views") or {}).items():
        fields[f"v{depth}"] = raw
    return fields


def _id_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


def redis_client(url: str, **options: Any) -> aioredis.Redis:
    """A client that survives a Redis restart: a stale pooled connection is retried once on
    a fresh one instead of failing the caller (issue 18: refusals long after a restart)."""
    return aioredis.Redis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=10,
        **options,
    )


class ResumeUnavailable(Exception):
    """The messages after the client's seq are no longer (or not) held."""

    def __init__(self, oldest_seq: int | None) -> None:
        super().__init__("resume_unavailable")
        self.oldest_seq = oldest_seq


class RedisStore:
    """The per-channel streams. One instance per event loop (redis.asyncio pools are)."""

    def __init__(self, url: str, *, seconds: int, maxlen: int) -> None:
        # Bounded waits: a stalled Redis must not hold a flush or a subscription for long.
        self.client = redis_client(url, socket_timeout=5, socket_connect_timeout=2)
        self.url = url
        self.seconds, self.maxlen = seconds, maxlen
        self._guarded: dict[str, tuple[int, float]] = {}  # channel -> (appends, TTL renewed)
        self._keyframed: dict[str, int] = {}  # book channel -> ts of its last keyframe

    # --- the publisher's side -------------------------------------------------------------
    async def append(self, messages: list[PublishedMessage]) -> None:
        """Every message of one flush in one round trip.

        Each message has ``channel``, ``seq``, ``ts``, ``records`` and ``data`` (JSON
        bytes); a book delta also ``views`` (its smaller depths) and ``state`` (the full
        book after it), which is written with the message in one MULTI, so a reader
        that takes the state and the stream's newest entry together (``join``) gets a
        state and a cursor that agree.
        """
        keep_ms = self.seconds * 1000
        min_id = max(0, time.time_ns() // 1_000_000 - keep_ms)
        now = time.monotonic()
        books = any("state" in m for m in messages)
        pipe = self.client.pipeline(transaction=books)
        for message in messages:
            channel = message["channel"]
            key = replay_key(channel)
            pipe.xadd(key, _message_fields(message), minid=min_id, approximate=True)
            if "state" in message:
                self._state_write(pipe, message, min_id=min_id, keep_ms=keep_ms)
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

    def _state_write(
        self,
        pipe: aioredis.client.Pipeline,
        message: PublishedMessage,
        *,
        min_id: int,
        keep_ms: int,
    ) -> None:
        channel = message["channel"]
        fields: dict[FieldT, EncodableT] = {
            "seq": message["seq"],
            "ts": message["ts"],
            "data": message["state"],
        }
        pipe.hset(state_key(channel), mapping=fields)
        pipe.pexpire(state_key(channel), keep_ms)
        last = self._keyframed.get(channel, 0)
        if message["ts"] - last >= KEYFRAME_EVERY_MS:
            self._keyframed[channel] = message["ts"]
            pipe.xadd(keyframe_key(channel), fields, minid=min_id, approximate=True)
            pipe.pexpire(keyframe_key(channel), keep_ms)

    async def book_states(self, channels: list[str]) -> dict[str, BookState]:
        """The stored full state of each book channel that has one (a restarted
        publisher diffs its first message against it)."""
        pipe = self.client.pipeline(transaction=False)
        for channel in channels:
            pipe.hgetall(state_key(channel))
        results = await pipe.execute()
        found = {c: _book_state(fields) for c, fields in zip(channels, results, strict=True)}
        return {c: state for c, state in found.items() if state is not None}

    async def join(self, channel: str) -> tuple[StoredMessage | None, BookState | None]:
        """The newest message and, for a book, the state after it, read together (MULTI)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.xrevrange(replay_key(channel), count=1)
        pipe.hgetall(state_key(channel))
        rows, fields = await pipe.execute()
        return (_stored(*rows[0]) if rows else None), _book_state(fields)

    async def keyframe(self, channel: str, *, at_or_before_ms: int) -> BookState | None:
        """A book's stored full state from `at_or_before_ms` or earlier (else the oldest)."""
        key = keyframe_key(channel)
        rows = cast(
            "list[StreamRow]",
            await self.client.xrevrange(key, max=max(0, at_or_before_ms), min="-", count=1),
        )
        if not rows:
            rows = cast("list[StreamRow]", await self.client.xrange(key, count=1))
        return _book_state(rows[0][1]) if rows else None

    async def last_seqs(self, channels: list[str]) -> dict[str, int]:
        """The newest stored seq of each channel (0 for none): a restarted feed continues
        the numbering, so clients see neither a reset nor a repeat."""
        pipe = self.client.pipeline(transaction=False)
        for channel in channels:
            pipe.xrevrange(replay_key(channel), count=1)
        results = await pipe.execute()
        return {
            channel: int(rows[0][1][b"seq"]) if rows else 0
            for channel, rows in zip(channels, results, strict=True)
        }

    # --- the hub's side -------------------------------------------------------------------
    async def latest(self, channel: str) -> StoredMessage | None:
        rows = cast("list[StreamRow]", await self.client.xrevrange(replay_key(channel), count=1))
        return _stored(*rows[0]) if rows else None

    async def between(
        self, channel: str, *, start_ms: int, end_ms: int | None, previous: bool
    ) -> tuple[StoredMessage | None, list[StoredMessage]]:
        """Messages published from about `start_ms` to `end_ms` (None: the newest), oldest
        first, and with `previous` the last one before them (a stateful channel's snapshot)."""
        key = replay_key(channel)
        low = max(0, start_ms - CLOCK_MARGIN_MS)
        high = "+" if end_ms is None else end_ms + CLOCK_MARGIN_MS
        pipe = self.client.pipeline(transaction=False)
        if previous:
            pipe.xrevrange(key, max=max(0, low - 1), min="-", count=1)
        pipe.xrange(key, min=low, max=high)
        results = await pipe.execute()
        before = [_stored(*row) for row in results[0]] if previous else []
        entries = [_stored(*row) for row in results[-1]]
        return (before[0] if before else None), entries

    async def after_seq(self, channel: str, seq: int) -> AsyncIterator[list[StoredMessage]]:
        """Every stored message after `seq`, oldest first, a page at a time (resume).

        Raises ResumeUnavailable, before the first page, when the message right after
        `seq` is no longer held (trimmed, expired, or the numbering restarted since).
        Seq grows with the stream id, so the first message after `seq` is found by
        bisecting the id range (about twenty one-entry reads for a full stream) rather
        than by reading it all. Pages are read as the caller asks for them, so a long
        backlog is never held in memory at once.
        """
        key = replay_key(channel)
        first = cast("list[StreamRow]", await self.client.xrange(key, count=1))
        last = cast("list[StreamRow]", await self.client.xrevrange(key, count=1))
        if not first:
            raise ResumeUnavailable(None)
        oldest, newest = _stored(*first[0]), _stored(*last[0])
        if newest.seq == seq:
            return
        if seq < oldest.seq - 1 or seq > newest.seq or newest.seq < oldest.seq:
            raise ResumeUnavailable(oldest.seq)
        low, high = _id_ms(oldest.id), _id_ms(newest.id)
        while low < high:  # the smallest id time whose first entry has seq > `seq`
            middle = (low + high) // 2
            probe = cast("list[StreamRow]", await self.client.xrange(key, min=middle, count=1))
            if probe and _stored(*probe[0]).seq > seq:
                high = middle
            else:
                low = middle + 1
        cursor: str = str(max(0, low - 1))
        started = False
        while True:
            rows = cast(
                "list[StreamRow]", await self.client.xrange(key, min=cursor, count=RESUME_PAGE)
            )
            page = [_stored(*row) for row in rows]
            found = [m for m in page if m.seq > seq and m.id != cursor]
            if not started:
                if not found or found[0].seq != seq + 1:
                    raise ResumeUnavailable(oldest.seq)
                started = True
            if found:
                yield found
            if len(rows) < RESUME_PAGE:
                return
            cursor = page[-1].id

    async def aclose(self) -> None:
        await self.client.aclose()

    def reader(self) -> RedisStreamReader:
        return RedisStreamReader(self.url)


class RedisStreamReader:
    """One blocking XREAD over every channel a hub listens to.

    A channel joined while the read blocks would wait for the read's timeout; instead
    the hub ``wake``s the read through a key of its own that every read includes.
    """

    BLOCK_MS = 2000

    def __init__(self, url: str) -> None:
        # Blocking reads on their own connection; the timeout outlasts the block.
        self.client = redis_client(url, socket_timeout=self.BLOCK_MS / 1000 + 5)
        self.wake_key = f"qs:stream:wake:{time.time_ns()}:{id(self)}"
        self._wake_cursor = "0-0"

    async def read(self, cursors: dict[str, str]) -> list[tuple[str, list[StoredMessage]]]:
        """New messages after each channel's cursor, oldest first; [] after a quiet block."""
        streams: dict[KeyT, StreamIdT] = {replay_key(c): cursor for c, cursor in cursors.items()}
        streams[self.wake_key] = self._wake_cursor
        # RESP2 without decode_responses: [[key, rows], ...], or None after a quiet block.
        reply = cast(
            "list[tuple[bytes, list[StreamRow]]] | None",
            await self.client.xread(streams, block=self.BLOCK_MS),
        )
        found = []
        for raw_key, rows in reply or ():
            key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
            if key == self.wake_key:
                last_id = rows[-1][0]
                self._wake_cursor = last_id.decode() if isinstance(last_id, bytes) else last_id
                continue
            found.append((channel_of(key), [_stored(*row) for row in rows]))
        return found

    async def wake(self) -> None:
        await self.client.xadd(self.wake_key, {"w": 1}, maxlen=1)
        await self.client.pexpire(self.wake_key, 60_000)

    async def aclose(self) -> None:
        await self.client.delete(self.wake_key)
        await self.client.aclose()


class LocalStore:
    """The same history in process (embedded mode: the feed runs on daphne's loop).

    A bounded deque per channel; readers wait on one condition that every append
    notifies. Ids are a process-wide counter, so cursors work as with Redis.
    """

    def __init__(self, *, seconds: int, maxlen: int) -> None:
        self.seconds, self.maxlen = seconds, maxlen
        self.streams: dict[str, deque[StoredMessage]] = {}
        self.states: dict[str, BookState] = {}
        self.keyframes: dict[str, deque[BookState]] = {}
        self._counter = 0
        self._changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def append(self, messages: list[PublishedMessage]) -> None:
        oldest = time.time_ns() // 1_000_000 - self.seconds * 1000
        for message in messages:
            self._counter += 1
            stream = self.streams.setdefault(message["channel"], deque(maxlen=self.maxlen))
            stream.append(
                StoredMessage(
                    seq=message["seq"],
                    ts=message["ts"],
                    records=message["records"],
                    data=message["data"],
                    id=f"{self._counter}-0",
                    views=message.get("views"),
                )
            )
            while stream and stream[0].ts < oldest:
                stream.popleft()
            if "state" in message:
                self._state_write(message, oldest)
        changed = self._condition()
        async with changed:
            changed.notify_all()

    def _state_write(self, message: PublishedMessage, oldest: int) -> None:
        channel = message["channel"]
        state = BookState(seq=message["seq"], ts=message["ts"], data=message["state"])
        self.states[channel] = state
        frames = self.keyframes.setdefault(channel, deque())
        if not frames or state.ts - frames[-1].ts >= KEYFRAME_EVERY_MS:
            frames.append(state)
        while len(frames) > 1 and frames[0].ts < oldest:
            frames.popleft()

    async def book_states(self, channels: list[str]) -> dict[str, BookState]:
        return {c: self.states[c] for c in channels if c in self.states}

    async def join(self, channel: str) -> tuple[StoredMessage | None, BookState | None]:
        stream = self.streams.get(channel)
        return (stream[-1] if stream else None), self.states.get(channel)

    async def keyframe(self, channel: str, *, at_or_before_ms: int) -> BookState | None:
        frames = list(self.keyframes.get(channel, ()))
        before = [f for f in frames if f.ts <= at_or_before_ms]
        return before[-1] if before else (frames[0] if frames else None)

    async def last_seqs(self, channels: list[str]) -> dict[str, int]:
        return {c: self.streams[c][-1].seq if self.streams.get(c) else 0 for c in channels}

    async def latest(self, channel: str) -> StoredMessage | None:
        stream = self.streams.get(channel)
        return stream[-1] if stream else None

    async def between(
        self, channel: str, *, start_ms: int, end_ms: int | None, previous: bool
    ) -> tuple[StoredMessage | None, list[StoredMessage]]:
        stream = list(self.streams.get(channel, ()))
        before = [m for m in stream if m.ts < start_ms]
        inside = [m for m in stream if m.ts >= start_ms and (end_ms is None or m.ts <= end_ms)]
        return (before[-1] if previous and before else None), inside

    async def after_seq(self, channel: str, seq: int) -> AsyncIterator[list[StoredMessage]]:
        stream = list(self.streams.get(channel, ()))
        if not stream:
            raise ResumeUnavailable(None)
        if stream[-1].seq == seq:
            return
        found = [m for m in stream if m.seq > seq]
        if not found or found[0].seq != seq + 1 or seq > stream[-1].seq:
            raise ResumeUnavailable(stream[0].seq)
        for start in range(0, len(found), RESUME_PAGE):
            yield found[start : start + RESUME_PAGE]

    async def aclose(self) -> None:
        return None

    def reader(self) -> LocalStreamReader:
        return LocalStreamReader(self)


class LocalStreamReader:
    BLOCK_SECONDS = 2.0

    def __init__(self, store: LocalStore) -> None:
        self.store = store

    def _new(self, cursors: dict[str, str]) -> list[tuple[str, list[StoredMessage]]]:
        found: list[tuple[str, list[StoredMessage]]] = []
        for channel, cursor in cursors.items():
            after = _id_ms(cursor)
            rows = [m for m in self.store.streams.get(channel, ()) if _id_ms(m.id) > after]
            if rows:
                found.append((channel, rows))
        return found

    async def read(self, cursors: dict[str, str]) -> list[tuple[str, list[StoredMessage]]]:
        found = self._new(cursors)
        if found:
            return found
        changed = self.store._condition()
        async with changed:
            try:
                await asyncio.wait_for(changed.wait(), self.BLOCK_SECONDS)
            except TimeoutError:
                return []
        return self._new(cursors)

    async def wake(self) -> None:
        changed = self.store._condition()
        async with changed:
            changed.notify_all()

    async def aclose(self) -> None:
        return None


_local: LocalStore | None = None


def store_for_settings() -> RedisStore | LocalStore:
    """Redis with REDIS_URL; else the process's one local store (publisher and hub share it)."""
    if settings.REDIS_URL:
        return RedisStore(
            settings.REDIS_URL,
            seconds=settings.STREAM_REPLAY_SECONDS,
            maxlen=settings.STREAM_REPLAY_MAXLEN,
        )
    return local_store()


def local_store() -> LocalStore:
    """The process's one local store (embedded mode: the publisher and the hub share it)."""
    global _local
    if _local is None:
        _local = LocalStore(
            seconds=settings.STREAM_REPLAY_SECONDS, maxlen=settings.STREAM_REPLAY_MAXLEN
        )
    return _local
