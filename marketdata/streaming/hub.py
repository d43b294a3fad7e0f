"""The per-process fan-out hub: one per event loop (one per daphne process).

The hub, not each connection, is the channel layer's client. It owns one
channel-layer channel and adds it to a channel's group when the first local
connection subscribes, and discards it when the last one leaves, so Redis sees
one subscription per process per channel and a mass disconnect costs one
``group_discard`` per channel, not one per client. Each published message is
serialised once (``Event``) and the same frame string goes to every local
subscriber's queue.

Delayed plans: the hub keeps one delay line per delay value in use. Every
message of every joined channel enters each line and is released when its
publish time plus the delay has passed, with its original ``seq``. A delayed
connection's snapshots come from what its line has released, never from the
real-time state, so nothing real-time reaches it.

A line only holds what this hub heard while it listened to a channel. When a
delayed subscription finds its line without the last `delay` seconds of the
channel, the line reads them once from the publisher's replay stream
(replay.py) and releases them on time ahead of what it heard live; see
``DelayLine.seed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from typing import Any
from weakref import WeakKeyDictionary

import redis.exceptions
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from marketdata.feeds.groups import channel_group
from marketdata.streaming import frames
from marketdata.streaming.connection import LAG_CLOSE_SECONDS, Connection
from marketdata.streaming.protocol import STATEFUL_KINDS, InstrumentCatalog, channel_kind
from marketdata.streaming.quotas import SLOT_REFRESH_SECONDS, gather_bounded, slots_for_settings
from marketdata.streaming.replay import ReplayEntry, replay_for_settings

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
RECHECK_SECONDS = 3.0  # keys, memberships and plans of open connections (recheck.py)
USAGE_FLUSH_SECONDS = 5.0
MAINTENANCE_SECONDS = 1.0  # the housekeeping tick; nothing above runs more often
CLOSE_LAGGING = 4029


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Event:
    """One published message, serialised once; each form is built on first use and shared.

    ``update_wire``/``snapshot_wire`` are the complete WebSocket frames that
    daphne connections write as they are; ``update_frame``/``snapshot_frame`` the
    JSON strings for the ASGI path.
    """

    __slots__ = ("_forms", "channel", "data", "records", "seq", "ts")

    def __init__(self, *, channel: str, seq: int, data: Any, ts: int) -> None:
        self.channel, self.seq, self.data, self.ts = channel, seq, data, ts
        self.records = len(data) if isinstance(data, list) else 1
        self._forms: dict[str, Any] = {}

    def _json(self, kind: str) -> bytes:
        body = self._forms.get(kind)
        if body is None:
            body = self._forms[kind] = frames.dumps_bytes(
                {"type": kind, "channel": self.channel, "seq": self.seq, "data": self.data}
            )
        return body

    def _form(self, name: str, kind: str, wire: bool) -> Any:
        form = self._forms.get(name)
        if form is None:
            body = self._json(kind)
            form = self._forms[name] = frames.wire(body) if wire else body.decode()
        return form

    @property
    def update_frame(self) -> str:
        return self._form("update_frame", "update", wire=False)

    @property
    def update_wire(self) -> bytes:
        return self._form("update_wire", "update", wire=True)

    @property
    def snapshot_frame(self) -> str:
        return self._form("snapshot_frame", "snapshot", wire=False)

    @property
    def snapshot_wire(self) -> bytes:
        return self._form("snapshot_wire", "snapshot", wire=True)


class DelayLine:
    """Messages waiting out one delay value, released in publish order.

    ``entries`` holds what the hub heard live, for every joined channel. ``replay``
    holds, per channel, what was read from the replay stream to fill the time
    before the line heard the channel (``seed``): all of it older than the
    channel's first live entry, so a channel's replay goes out before its live
    entries and ``seq`` runs on without a gap or a repeat.
    """

    def __init__(self, hub: Hub, delay_seconds: int) -> None:
        self.hub, self.delay = hub, delay_seconds
        self.delay_ms = delay_seconds * 1000
        self.entries: deque[tuple[int, Event]] = deque()
        self.latest: dict[str, Event] = {}  # released state of stateful channels
        self.replay: dict[str, deque[tuple[int, Event]]] = {}
        self.first: dict[str, tuple[int, int]] = {}  # (ts, seq) of a channel's first live entry
        self.replayed: dict[str, tuple[int, int]] = {}  # (ts, seq) of the last replayed
        self.complete_from: dict[str, int] = {}  # history held from then on (seeded channels)
        self._seeds: dict[str, asyncio.Future] = {}
        self._forgotten: Counter[str] = Counter()
        self._wakeup = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    def push(self, event: Event) -> None:
        channel = event.channel
        replayed = self.replayed.get(channel)
        if replayed is not None:
            if (event.ts, event.seq) <= replayed:
                return  # in flight when the stream was read: already in the replay
            del self.replayed[channel]  # later messages are newer still
        if channel not in self.first:
            self.first[channel] = (event.ts, event.seq)
        self.entries.append((event.ts + self.delay_ms, event))
        self._wakeup.set()

    def forget(self, channel: str) -> None:
        self.latest.pop(channel, None)
        self.entries = deque(e for e in self.entries if e[1].channel != channel)
        for held in (self.replay, self.first, self.replayed, self.complete_from):
            held.pop(channel, None)
        self._forgotten[channel] += 1

    # --- history from the replay stream --------------------------------------------------
    def _complete(self, channel: str, now: int) -> bool:
        """Whether the line holds every message of `channel` from `delay` ago on."""
        since = self.complete_from.get(channel)
        if since is None:
            first = self.first.get(channel)
            since = None if first is None else first[0]
        return since is not None and since <= now - self.delay_ms

    async def seed(self, channel: str) -> None:
        """Fill the channel's missing history from the replay stream, once per gap.

        Subscribers arriving while a read is in flight wait for the same read.
        """
        if self.hub.replay is None or self._complete(channel, now_ms()):
            return
        seeding = self._seeds.get(channel)
        if seeding is None:
            seeding = self._seeds[channel] = asyncio.ensure_future(self._seed(channel))
            seeding.add_done_callback(
                lambda done: self._seeds.pop(channel) if self._seeds.get(channel) is done else None
            )
        await asyncio.shield(seeding)

    async def _seed(self, channel: str) -> None:
        forgotten = self._forgotten[channel]
        stateful = channel_kind(channel) in STATEFUL_KINDS
        start = now_ms() - self.delay_ms
        first = self.first.get(channel)
        try:
            previous, entries = await self.hub.replay.read(
                channel,
                start_ms=start,
                end_ms=None if first is None else first[0],
                previous=stateful and channel not in self.latest,
            )
        except Exception:  # as without history: the line fills itself; a later subscriber retries
            logger.warning("stream replay read for %s failed", channel, exc_info=True)
            return
        if self._forgotten[channel] != forgotten:
            return  # the hub left the channel meanwhile
        now = now_ms()
        self.complete_from[channel] = start
        first = self.first.get(channel)  # live messages may have arrived meanwhile
        if first is not None and first[0] + self.delay_ms <= now:
            return  # live entries are already going out: too late to put older ones first
        if previous is not None:
            entries.insert(0, previous)
        released: ReplayEntry | None = None
        queue: deque[tuple[int, Event]] = deque()
        last = None
        for entry in entries:
            if first is not None and entry.order >= first:
                break
            last = entry
            if entry.ts + self.delay_ms <= now:
                released = entry  # older than the delay: only the latest state counts
            else:
                queue.append((entry.ts + self.delay_ms, self._event(channel, entry)))
        if last is None:
            return
        self.replayed[channel] = last.order
        if queue:
            self.replay[channel] = queue
            self._wakeup.set()
        if released is not None and stateful and channel not in self.latest:
            event = self.latest[channel] = self._event(channel, released)
            for conn in self.hub.subscribers.get(self.delay, {}).get(channel, ()):
                if channel in conn.snapshot_pending:
                    conn.snapshot_pending.discard(channel)
                    conn.push_snapshot(event)

    @staticmethod
    def _event(channel: str, entry: ReplayEntry) -> Event:
        return Event(channel=channel, seq=entry.seq, data=entry.data, ts=entry.ts)

    # --- releasing ------------------------------------------------------------------------
    def _next_due(self) -> int | None:
        due = self.entries[0][0] if self.entries else None
        for queue in self.replay.values():
            if due is None or queue[0][0] < due:
                due = queue[0][0]
        return due

    async def _run(self) -> None:
        while True:
            due = self._next_due()
            if due is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            wait_ms = due - now_ms()
            if wait_ms > 0:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), wait_ms / 1000)
                continue
            self._release(now_ms())

    def _release(self, now: int) -> None:
        subscribers = self.hub.subscribers.get(self.delay, {})
        # Replayed entries first: each precedes its channel's live entries.
        for channel in list(self.replay):
            queue = self.replay[channel]
            while queue and queue[0][0] <= now:
                self._deliver(queue.popleft()[1], subscribers)
            if not queue:
                del self.replay[channel]
        entries = self.entries
        while entries and entries[0][0] <= now:
            self._deliver(entries.popleft()[1], subscribers)

    def _deliver(self, event: Event, subscribers: dict[str, set[Connection]]) -> None:
        if channel_kind(event.channel) in STATEFUL_KINDS:
            self.latest[event.channel] = event
        for conn in subscribers.get(event.channel, ()):
            conn.deliver(event)

    def stop(self) -> None:
        self._task.cancel()
        for seeding in self._seeds.values():
            seeding.cancel()


class Hub:
    def __init__(self, layer=None, slots=None) -> None:
        self.layer = layer if layer is not None else get_channel_layer()
        self.slots = slots if slots is not None else slots_for_settings()
        self.replay = replay_for_settings()
        self.connections: set[Connection] = set()
        # delay seconds -> channel -> connections (0 = real time)
        self.subscribers: dict[int, dict[str, set[Connection]]] = {}
        self.latest: dict[str, Event] = {}  # real-time state of joined stateful channels
        self.lines: dict[int, DelayLine] = {}
        self.joined: set[str] = set()
        self.catalog = InstrumentCatalog()
        self.hub_channel: str | None = None
        self.messages_received = 0
        self._locks: dict[str, asyncio.Lock] = {}
        self._reader: asyncio.Task | None = None
        self._maintenance: asyncio.Task | None = None
        self._pending_release: dict[int, set[str]] = {}
        self._release_task: asyncio.Task | None = None
        self._usage: Counter[int] = Counter()
        # Set by the consumer module: (hub, connections) -> {conn: (code, reason, farewell
        # frame or None)}, the connections to close; see recheck.py.
        self._recheck = None
        self._last = {"refresh": 0.0, "recheck": 0.0, "usage": 0.0, "groups": time.monotonic()}

    # --- connections --------------------------------------------------------------------
    def connection_add(self, conn: Connection) -> None:
        self.connections.add(conn)
        self.subscribers.setdefault(conn.delay, {})
        if conn.delay and conn.delay not in self.lines:
            self.lines[conn.delay] = DelayLine(self, conn.delay)
        if self._maintenance is None or self._maintenance.done():
            self._maintenance = asyncio.ensure_future(self._maintain())
        conn.start()

    async def connection_remove(self, conn: Connection) -> None:
        """Idempotent: called on disconnect, and again harmlessly on any other close path."""
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        self._usage[conn.organization_id] += conn.delivered
        conn.delivered = 0
        channels = list(conn.channels)
        conn.channels.clear()
        conn.added.clear()
        await conn.stop()
        self.slot_release(organization_id=conn.organization_id, connection_id=conn.id)
        for channel in channels:
            self.subscribers.get(conn.delay, {}).get(channel, set()).discard(conn)
        await gather_bounded([self._sync_group(channel) for channel in channels])
        if conn.delay and not any(c.delay == conn.delay for c in self.connections):
            line = self.lines.pop(conn.delay, None)
            if line is not None:
                line.stop()

    def slot_release(self, *, organization_id: int, connection_id: str) -> None:
        """Batched: a mass disconnect becomes one ZREM per organization."""
        self._pending_release.setdefault(organization_id, set()).add(connection_id)
        if self._release_task is None or self._release_task.done():
            self._release_task = asyncio.ensure_future(self._release_pending())

    async def _release_pending(self) -> None:
        await asyncio.sleep(0)  # let the rest of a burst join this batch
        while self._pending_release:
            pending, self._pending_release = self._pending_release, {}
            results = await gather_bounded(
                [
                    self.slots.release(organization_id=org, connection_ids=sorted(ids))
                    for org, ids in pending.items()
                ]
            )
            for result in results:
                if isinstance(result, BaseException):  # the TTL frees it anyway
                    logger.warning("stream slot release failed: %s", result)

    async def instruments(self) -> set[tuple[str, str]]:
        if self.catalog.stale():
            await sync_to_async(self.catalog.load)()
        return self.catalog.pairs

    # --- subscriptions --------------------------------------------------------------------
    def snapshot_for(self, channel: str, delay: int) -> Event | None:
        if delay == 0:
            return self.latest.get(channel)
        line = self.lines.get(delay)
        return None if line is None else line.latest.get(channel)

    async def subscribe(self, conn: Connection, channels: list[str]) -> None:
        new = []
        for channel in channels:
            if channel in conn.channels:
                continue
            new.append(channel)
            conn.channels.add(channel)
            conn.added[channel] = None
            self.subscribers.setdefault(conn.delay, {}).setdefault(channel, set()).add(conn)
            if channel_kind(channel) in STATEFUL_KINDS:
                event = self.snapshot_for(channel, conn.delay)
                if event is not None:
                    conn.push_snapshot(event)
                else:  # the first message to arrive is sent as the snapshot
                    conn.snapshot_pending.add(channel)
        await gather_bounded([self._sync_group(channel) for channel in channels])
        line = self.lines.get(conn.delay) if conn.delay else None
        if line is not None:  # after joining: what is not in the stream then arrives live
            await gather_bounded([line.seed(c) for c in new if c in conn.channels])

    async def unsubscribe(self, conn: Connection, channels: list[str]) -> None:
        for channel in channels:
            conn.channels.discard(channel)
            conn.added.pop(channel, None)
            conn.snapshot_pending.discard(channel)
            conn.lag.pop(channel, None)
            self.subscribers.get(conn.delay, {}).get(channel, set()).discard(conn)
        await gather_bounded([self._sync_group(channel) for channel in channels])

    def _wanted(self, channel: str) -> bool:
        return any(by_channel.get(channel) for by_channel in self.subscribers.values())

    async def _sync_group(self, channel: str) -> None:
        """Join or leave `channel`'s group so membership matches local interest."""
        lock = self._locks.setdefault(channel, asyncio.Lock())
        async with lock:
            wanted = self._wanted(channel)
            if wanted and channel not in self.joined:
                await self._ensure_reader()
                await self.layer.group_add(channel_group(channel), self.hub_channel)
                self.joined.add(channel)
            elif not wanted and channel in self.joined:
                self.joined.discard(channel)
                self.latest.pop(channel, None)  # stale once we stop listening
                for line in self.lines.values():
                    line.forget(channel)
                for by_channel in self.subscribers.values():
                    by_channel.pop(channel, None)
                try:
                    await self.layer.group_discard(channel_group(channel), self.hub_channel)
                except Exception:  # group expiry removes it anyway; log and go on
                    logger.warning("group_discard %s failed", channel, exc_info=True)
        if not self._wanted(channel) and channel not in self.joined:
            self._locks.pop(channel, None)

    # --- receiving ------------------------------------------------------------------------
    async def _ensure_reader(self) -> None:
        if self.hub_channel is None:
            self.hub_channel = await self.layer.new_channel("stream-hub.")
        if self._reader is None or self._reader.done():
            self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.hub_channel)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, redis.exceptions.TimeoutError):
                # channels-redis blocks 5 s in BZPOPMIN; with redis-py's read timeout an
                # idle wait can end in a client-side timeout. Nothing was popped: go on.
                continue
            except Exception:
                logger.warning("stream hub: channel layer receive failed", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            try:
                self.dispatch(message)
            except Exception:
                logger.exception("stream hub: bad message %r", message)

    def dispatch(self, message: dict) -> None:
        channel = message["channel"]
        if channel not in self.joined:
            return  # in flight while we left the group
        self.messages_received += 1
        event = Event(
            channel=channel,
            seq=message["seq"],
            data=message["data"],
            ts=message.get("ts") or now_ms(),
        )
        if channel_kind(channel) in STATEFUL_KINDS:
            self.latest[channel] = event
        for conn in self.subscribers.get(0, {}).get(channel, ()):
            conn.deliver(event)
        for line in self.lines.values():
            line.push(event)

    # --- housekeeping ---------------------------------------------------------------------
    async def _maintain(self) -> None:
        while self.connections or self._usage:
            await asyncio.sleep(MAINTENANCE_SECONDS)
            try:
                await self._maintain_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("stream hub maintenance failed")

    async def _maintain_once(self) -> None:
        now = time.monotonic()
        for conn in list(self.connections):
            if conn.lagging_for(now) > LAG_CLOSE_SECONDS:
                await conn.close(CLOSE_LAGGING, "Reading too slowly.")
            elif not conn.frames and now - conn.last_sent >= HEARTBEAT_SECONDS:
                conn.push(frames.heartbeat(ts=now_ms()))
        if now - self._last["refresh"] >= SLOT_REFRESH_SECONDS:
            self._last["refresh"] = now
            await self._slots_refresh()
        if self._recheck is not None and now - self._last["recheck"] >= RECHECK_SECONDS:
            self._last["recheck"] = now
            closing = await self._recheck(self, list(self.connections))
            for conn, (code, reason, farewell) in closing.items():
                await conn.close(code, reason, farewell=farewell)
        if now - self._last["usage"] >= USAGE_FLUSH_SECONDS:
            self._last["usage"] = now
            await self.usage_flush()
        if now - self._last["groups"] >= self._group_refresh_seconds():
            self._last["groups"] = now
            await gather_bounded(
                [self.layer.group_add(channel_group(c), self.hub_channel) for c in self.joined]
            )
        if self.catalog.stale() and self.connections:
            await sync_to_async(self.catalog.load)()

    def _group_refresh_seconds(self) -> float:
        # Channels expires group membership after group_expiry; re-adding well before that
        # keeps a long-lived hub subscribed.
        return min(getattr(self.layer, "group_expiry", 86400) / 2, 3600)

    async def _slots_refresh(self) -> None:
        by_org: dict[int, list[str]] = {}
        for conn in self.connections:
            by_org.setdefault(conn.organization_id, []).append(conn.id)
        results = await gather_bounded(
            [
                self.slots.refresh(organization_id=org, connection_ids=ids)
                for org, ids in by_org.items()
            ]
        )
        for result in results:
            if isinstance(result, BaseException):
                logger.warning("stream slot refresh failed: %s", result)

    async def usage_flush(self) -> None:
        """Delivered data messages per organization, added to usage in one call each."""
        from billing.usage import stream_messages_count

        for conn in self.connections:
            if conn.delivered:
                self._usage[conn.organization_id] += conn.delivered
                conn.delivered = 0
        counts, self._usage = self._usage, Counter()
        counts = {org: n for org, n in counts.items() if n}
        if not counts:
            return
        day = time.gmtime()
        from datetime import date

        today = date(day.tm_year, day.tm_mon, day.tm_mday)

        def write() -> None:
            for org, n in counts.items():
                stream_messages_count(organization_id=org, count=n, day=today)

        await sync_to_async(write, thread_sensitive=False)()

    async def aclose(self) -> None:
        """Stop every task and give back the group memberships (tests; server shutdown)."""
        for conn in list(self.connections):
            await self.connection_remove(conn)
        if self._release_task is not None:
            with contextlib.suppress(Exception):
                await self._release_task  # slots go back before the pool closes
        for task in (self._reader, self._maintenance):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        for line in self.lines.values():
            line.stop()
        await self.slots.aclose()
        if self.replay is not None:
            await self.replay.aclose()


_hubs: WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = WeakKeyDictionary()


def hub_peek() -> Hub | None:
    """The running loop's hub if one was made (tests use it to clean up)."""
    return _hubs.get(asyncio.get_running_loop())


def hub_get() -> Hub:
    """The hub of the running event loop (daphne has one; each test has its own)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub
