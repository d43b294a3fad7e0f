"""The per-process fan-out hub: one per event loop (one per daphne process).

The hub, not each connection, reads market data. While any local connection
wants a channel, the hub listens to that channel's stored stream (store.py)
with one blocking ``XREAD`` for all its channels, so Redis sees one reader per
process, and every message is turned into frames once (events.py) and handed
to every local subscriber.

**Latency follows load.** Each (delay, channel) pair has an ``Outlet`` that
sends a message to its subscribers on the next loop turn while the channel's
recent fan-outs stayed within FANOUT_SHARE of the process's CPU (a budget in
CPU seconds); once over it, frames wait for the budget, so one channel takes at
most about that share of the process. Ten clients cost
microseconds, so every tick goes at once; 500 clients of a channel ticking
1,000 times a second are sent a frame every few milliseconds carrying
everything since the last one. Messages that piled up while the process was
busy arrive in one read and go out as one frame too. The wait never exceeds
``MAX_GAP_SECONDS``.

Delayed plans: one delay line per delay value in use (delay.py).

Books: the stream carries deltas (books.py); the hub holds each joined book's full
state (``books``), taken with the stream's cursor on join (``store.join``) and
kept by applying every delta, so a snapshot is always at hand: on subscribe,
after ``lagged`` and after ``resume_unavailable``.

Continuity: a client that reconnects sends ``resume`` with the last ``seq`` it
has per channel; the hub reads what it missed from the store, sends it, and
continues with the live messages without a gap or a repeat (``resume``).

Restarts: ``drain`` closes every connection with 1012 and gives the connection
slots back before the process exits (quantsaas/web.py calls it on SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from weakref import WeakKeyDictionary

from channels.db import database_sync_to_async

from marketdata.feeds.health import feeds_alive
from marketdata.streaming import frames
from marketdata.streaming.books import HeldBook, is_book_channel
from marketdata.streaming.connection import LAG_CLOSE_SECONDS, Connection
from marketdata.streaming.delay import DelayLine
from marketdata.streaming.events import Event, events_merge
from marketdata.streaming.protocol import (
    STATEFUL_KINDS,
    InstrumentCatalog,
    channel_kind,
)
from marketdata.streaming.quotas import (
    CLOSE_QUOTA,
    SLOT_REFRESH_SECONDS,
    LocalSlots,
    RedisSlots,
    gather_bounded,
    slots_for_settings,
)
from marketdata.streaming.store import (
    LocalStore,
    LocalStreamReader,
    RedisStore,
    RedisStreamReader,
    ResumeUnavailable,
    store_for_settings,
)
from marketdata.streaming.timing import now_ms
from quantsaas.db import in_db_thread

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
RECHECK_SECONDS = 3.0  # keys, memberships and plans of open connections (recheck.py)
USAGE_FLUSH_SECONDS = 5.0
MAINTENANCE_SECONDS = 1.0  # the housekeeping tick; nothing above runs more often
LEAVE_AFTER_SECONDS = 30.0  # keep reading a channel this long after its last subscriber
STATUS_SILENT_SECONDS = 15.0  # a feed that reported nothing this long is said to be down
# A runner's liveness key (feeds/health.py) missing on this many ticks in a row: it died.
STATUS_GONE_TICKS = 2
CLOSE_LAGGING = 4029
CLOSE_RESTART = 1012
FANOUT_SHARE = float(os.environ.get("STREAM_FANOUT_SHARE", "0.5"))
MAX_GAP_SECONDS = float(os.environ.get("STREAM_MAX_GAP_MS", "20")) / 1000
RESUME_MAX_MESSAGES = 200_000
RESUME_FRAME_MESSAGES = 500  # stored messages per frame of a resume's backlog
READ_RETRY_SECONDS = (0.1, 0.25, 0.5, 1.0)
REAL_TIME_KINDS = frozenset({"status", "alerts"})
CLOSE_SECONDS = 3.0
DRAIN_RELEASE_SECONDS = 1.5


class Outlet:
    """One channel's frames to the connections of one delay value, coalesced under load.

    A CPU budget, refilled at FANOUT_SHARE seconds per second and holding at most
    ``MAX_GAP_SECONDS * FANOUT_SHARE``: a message goes out on the next loop turn while
    the channel's recent fan-outs left budget, so a lone tick never waits; once they
    used it up (many clients, many ticks), the next frame waits until the budget is
    back, at most MAX_GAP_SECONDS, carrying everything that arrived meanwhile.
    """

    __slots__ = ("budget", "budget_at", "channel", "delay", "handle", "hub", "pending")

    def __init__(self, hub: Hub, delay: int, channel: str) -> None:
        self.hub, self.delay, self.channel = hub, delay, channel
        self.pending: list[Event] = []
        self.handle: asyncio.Handle | None = None
        self.budget = MAX_GAP_SECONDS * FANOUT_SHARE  # CPU seconds the channel may spend now
        self.budget_at = float("-inf")

    def _refill(self, now: float) -> None:
        cap = MAX_GAP_SECONDS * FANOUT_SHARE
        self.budget = min(cap, self.budget + (now - self.budget_at) * FANOUT_SHARE)
        self.budget_at = now

    def add(self, event: Event) -> None:
        self.pending.append(event)
        if self.handle is None:
            loop = asyncio.get_running_loop()
            self._refill(loop.time())
            wait = min(MAX_GAP_SECONDS, -self.budget / FANOUT_SHARE)
            self.handle = (
                loop.call_soon(self.flush) if wait <= 0 else loop.call_later(wait, self.flush)
            )

    def flush(self) -> None:
        self.handle = None
        events, self.pending = self.pending, []
        if not events:
            return
        event = events_merge(events)
        started = time.thread_time()  # CPU, not wall: a busy machine must not inflate it
        for conn in tuple(self.hub.subscribers.get(self.delay, {}).get(self.channel, ())):
            conn.deliver(event)
        loop = asyncio.get_running_loop()
        self._refill(loop.time())
        self.budget -= time.thread_time() - started

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


# The connections the periodic re-check closes: conn -> (code, reason, farewell frame or None).
Closing = dict[Connection, tuple[int, str, str | None]]
Recheck = Callable[["Hub", list[Connection]], Awaitable[Closing]]


class Hub:
    def __init__(
        self,
        slots: RedisSlots | LocalSlots | None = None,
        store: RedisStore | LocalStore | None = None,
    ) -> None:
        self.slots = slots if slots is not None else slots_for_settings()
        self.store = store if store is not None else store_for_settings()
        self.connections: set[Connection] = set()
        # delay seconds -> channel -> connections (0 = real time)
        self.subscribers: dict[int, dict[str, set[Connection]]] = {}
        self.latest: dict[str, Event] = {}  # real-time state of joined stateful channels
        self.books: dict[str, HeldBook] = {}  # full state of joined book channels
        self._book_waiting: dict[str, list[Event]] = {}  # deltas held while a state is read
        self._book_fetches: set[asyncio.Task[None]] = set()
        self._resumes: set[asyncio.Task[None]] = set()
        self.lines: dict[int, DelayLine] = {}
        self.joined: set[str] = set()
        self.cursors: dict[str, str] = {}  # channel -> id of the last stored message read
        self.unwanted_since: dict[str, float] = {}
        self.outlets: dict[tuple[int, str], Outlet] = {}
        self.status_heard: dict[str, float] = {}  # status channel -> when a report arrived
        self.status_missing: Counter[str] = Counter()  # ticks without the runner's liveness
        self.catalog = InstrumentCatalog()
        self.messages_received = 0
        self.draining = False
        self.reading = True  # False while the store cannot be read
        self._reader: RedisStreamReader | LocalStreamReader | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._joins = asyncio.Event()
        self._locks: dict[str, asyncio.Lock] = {}
        self._maintenance: asyncio.Task[None] | None = None
        self._pending_release: dict[int, set[str]] = {}
        self._release_task: asyncio.Task[None] | None = None
        self._usage: Counter[int] = Counter()
        # Set by the consumer module: (hub, connections) -> {conn: (code, reason, farewell
        # frame or None)}, the connections to close; see recheck.py.
        self._recheck: Recheck | None = None
        self._last = {"refresh": 0.0, "recheck": 0.0, "usage": 0.0}

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
            self.subscribers.get(self.delay_for(conn, channel), {}).get(channel, set()).discard(
                conn
            )
            self._interest_changed(channel)
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
            await database_sync_to_async(self.catalog.load)()
        return self.catalog.pairs

    # --- subscriptions --------------------------------------------------------------------
    @staticmethod
    def delay_for(conn: Connection, channel: str) -> int:
        """Feed status and alerts are not market data: every plan gets them as they happen."""
        return 0 if channel_kind(channel) in REAL_TIME_KINDS else conn.delay

    def snapshot_for(self, channel: str, delay: int) -> Event | None:
        if delay == 0 or channel_kind(channel) == "status":
            if channel in self.books:
                return book_snapshot(channel, self.books[channel], self.latest)
            return self.latest.get(channel)
        line = self.lines.get(delay)
        return None if line is None else line.snapshot(channel)

    def outlet(self, delay: int, channel: str) -> Outlet:
        outlet = self.outlets.get((delay, channel))
        if outlet is None:
            outlet = self.outlets[(delay, channel)] = Outlet(self, delay, channel)
        return outlet

    async def subscribe(
        self, conn: Connection, channels: list[str], *, since: dict[str, int] | None = None
    ) -> None:
        """Start `channels` for `conn`; those in `since` resume after the given seq."""
        since = since or {}
        new = []
        for channel in channels:
            if channel in conn.channels:
                continue
            new.append(channel)
            conn.channels.add(channel)
            conn.added[channel] = None
            delay = self.delay_for(conn, channel)
            self.subscribers.setdefault(delay, {}).setdefault(channel, set()).add(conn)
            self.unwanted_since.pop(channel, None)
            if channel in since:
                conn.resuming[channel] = []  # live messages wait for the missed ones
            elif channel_kind(channel) in STATEFUL_KINDS:
                conn.snapshot_pending.add(channel)
        await gather_bounded([self._join(channel) for channel in new])
        for channel in new:
            if channel in conn.snapshot_pending and channel in conn.channels:
                event = self.snapshot_for(channel, self.delay_for(conn, channel))
                if event is not None:  # else the first message to arrive is the snapshot
                    conn.snapshot_pending.discard(channel)
                    conn.push_snapshot(event)
        line = self.lines.get(conn.delay) if conn.delay else None
        if line is not None:  # after joining: what is not in the stream then arrives live
            await gather_bounded(
                [
                    line.seed(c)
                    for c in new
                    if c in conn.channels and channel_kind(c) not in REAL_TIME_KINDS
                ]
            )
        for channel in new:
            if channel in since and channel in conn.channels:
                task = asyncio.ensure_future(self._resume(conn, channel, since[channel]))
                self._resumes.add(task)  # paced by the client: the consumer goes on meanwhile
                task.add_done_callback(self._resumes.discard)

    async def unsubscribe(self, conn: Connection, channels: list[str]) -> None:
        for channel in channels:
            conn.forget(channel)
            self.subscribers.get(self.delay_for(conn, channel), {}).get(channel, set()).discard(
                conn
            )
            self._interest_changed(channel)

    def _wanted(self, channel: str) -> bool:
        return any(by_channel.get(channel) for by_channel in self.subscribers.values())

    def _interest_changed(self, channel: str) -> None:
        """A channel nobody here wants is left after a while, not at once: a client
        cycling subscribe/unsubscribe must not make the process re-read its history."""
        if channel in self.joined and not self._wanted(channel):
            self.unwanted_since.setdefault(channel, time.monotonic())

    async def _join(self, channel: str) -> None:
        """Start reading `channel` from its newest stored message (its state, if stateful)."""
        lock = self._locks.setdefault(channel, asyncio.Lock())
        async with lock:
            if channel in self.joined:
                return
            book = is_book_channel(channel)
            try:
                if book:  # the state and the cursor it is at, read together
                    latest, state = await self.store.join(channel)
                else:
                    latest, state = await self.store.latest(channel), None
            except Exception:  # Redis away: read on from now; the reader retries meanwhile
                logger.warning("stream: reading the state of %s failed", channel, exc_info=True)
                latest = state = None
                self.cursors[channel] = f"{now_ms()}-0"
            else:
                self.cursors[channel] = latest.id if latest is not None else "0-0"
            if book:
                if state is not None and latest is not None and state.seq == latest.seq:
                    self.books[channel] = HeldBook.from_state(
                        state.data, seq=state.seq, ts=state.ts
                    )
                elif latest is not None:
                    logger.warning("stream: no state matching %s's stream; waiting", channel)
            elif latest is not None and channel_kind(channel) in STATEFUL_KINDS:
                self.latest[channel] = Event.stored(channel, latest)
                if channel_kind(channel) == "status":
                    self.status_heard[channel] = time.monotonic()
            self.joined.add(channel)
            await self._reader_wake()

    def _leave(self, channel: str) -> None:
        self.joined.discard(channel)
        self.cursors.pop(channel, None)
        self.latest.pop(channel, None)  # stale once we stop listening
        self.books.pop(channel, None)
        self._book_waiting.pop(channel, None)
        self.unwanted_since.pop(channel, None)
        self.status_heard.pop(channel, None)
        self.status_missing.pop(channel, None)
        self._locks.pop(channel, None)
        for line in self.lines.values():
            line.forget(channel)
        for by_channel in self.subscribers.values():
            by_channel.pop(channel, None)
        for key in [k for k in self.outlets if k[1] == channel]:
            self.outlets.pop(key).cancel()

    # --- resume -----------------------------------------------------------------------------
    async def _resume(self, conn: Connection, channel: str, seq: int) -> None:
        """Send `conn` every message of `channel` after `seq`, then let live ones through.

        Read a page at a time and paced by the client's reading, as a replay is: a
        long backlog neither sits in memory whole nor overflows the connection's
        queue. Live messages wait in `conn.resuming` meanwhile.
        """
        delay = self.delay_for(conn, channel)
        cutoff = now_ms() - delay * 1000 if delay else None
        floor, sent = seq, 0
        try:
            async for page in self.store.after_seq(channel, seq):
                if cutoff is not None:  # the rest comes through the delay line
                    held = [m for m in page if m.ts <= cutoff]
                    page, done = held, len(held) < len(page)
                else:
                    done = False
                for start in range(0, len(page), RESUME_FRAME_MESSAGES):
                    while (  # noqa: ASYNC110 - Twisted gives no drain signal through ASGI
                        not conn.closed
                        and channel in conn.resuming
                        and len(conn.frames) > conn.max_frames // 2
                    ):
                        await asyncio.sleep(0.01)
                    if conn.closed or channel not in conn.resuming:
                        return  # gone, or unsubscribed meanwhile
                    chunk = page[start : start + RESUME_FRAME_MESSAGES]
                    conn.push_data(events_merge([Event.stored(channel, m) for m in chunk]))
                    floor = chunk[-1].seq
                sent += len(page)
                if done or sent >= RESUME_MAX_MESSAGES:
                    break
        except ResumeUnavailable as exc:
            self._resume_refused(conn, channel, oldest_seq=exc.oldest_seq)
            return
        except Exception:
            logger.warning("stream: resume read for %s failed", channel, exc_info=True)
            if floor == seq:
                self._resume_refused(conn, channel, oldest_seq=None)
                return
        conn.resume_done(channel, floor=floor)

    def _resume_refused(self, conn: Connection, channel: str, *, oldest_seq: int | None) -> None:
        conn.push(
            frames.error(
                code="resume_unavailable",
                message="The messages after that seq are no longer held; starting afresh.",
                details={"channel": channel, "oldest_seq": oldest_seq},
            )
        )
        floor = None
        if channel_kind(channel) in STATEFUL_KINDS:
            event = self.snapshot_for(channel, self.delay_for(conn, channel))
            if event is None:
                conn.snapshot_pending.add(channel)
            else:
                conn.push_snapshot(event)
                floor = event.seq
        conn.resume_done(channel, floor=floor)

    # --- receiving ------------------------------------------------------------------------
    async def _reader_wake(self) -> None:
        if self._reader_task is None or self._reader_task.done():
            self._reader_task = asyncio.ensure_future(self._read())
        self._joins.set()
        if self._reader is not None:
            try:
                await self._reader.wake()
            except Exception:  # the read's own timeout picks the channel up instead
                logger.debug("stream: waking the reader failed", exc_info=True)

    async def _read(self) -> None:
        reader = self._reader = self.store.reader()
        failures = 0
        while True:
            if not self.joined:
                self._joins.clear()
                await self._joins.wait()
                continue
            cursors = {channel: self.cursors[channel] for channel in self.joined}
            try:
                batch = await reader.read(cursors)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                current = asyncio.current_task()  # this task: never None here
                if current is not None and current.cancelling():
                    # redis-py can turn a cancelled read into a connection error: the
                    # hub is stopping, so stop rather than retry (and hold aclose).
                    raise asyncio.CancelledError from exc
                if self.reading:
                    logger.warning("stream hub: reading the store failed: %s", exc)
                self.reading = False
                await asyncio.sleep(READ_RETRY_SECONDS[min(failures, len(READ_RETRY_SECONDS) - 1)])
                failures += 1
                continue
            if not self.reading:
                logger.info("stream hub: reading the store again")
            self.reading, failures = True, 0
            for channel, messages in batch:
                if channel not in self.joined:
                    continue  # left while the read was in flight
                self.cursors[channel] = messages[-1].id
                try:
                    self.arrive(channel, [Event.stored(channel, m) for m in messages])
                except Exception:
                    logger.exception("stream hub: bad message on %s", channel)

    def arrive(self, channel: str, events: list[Event]) -> None:
        """New messages of a joined channel, oldest first."""
        self.messages_received += len(events)
        kind = channel_kind(channel)
        if kind == "book":
            self._book_arrive(channel, events)
            return
        if kind in STATEFUL_KINDS:
            self.latest[channel] = events[-1]
            if kind == "status":
                self.status_heard[channel] = time.monotonic()
        if self.subscribers.get(0, {}).get(channel):
            outlet = self.outlet(0, channel)
            for event in events:
                outlet.add(event)
        if kind not in REAL_TIME_KINDS:
            for line in self.lines.values():
                for event in events:
                    line.push(event)

    def _book_arrive(self, channel: str, events: list[Event]) -> None:
        """Book deltas: each applied to the held book, then sent on and into the lines."""
        held = self.books.get(channel)
        outlet = self.outlet(0, channel) if self.subscribers.get(0, {}).get(channel) else None
        for event in events:
            if held is not None and event.seq > held.seq:
                held.apply(event.raw, seq=event.seq, ts=event.ts)
            elif held is None and event.seq == 1:  # a book's very first message is whole
                held = self.books[channel] = HeldBook.from_state(b"{}", seq=0, ts=event.ts)
                held.apply(event.raw, seq=event.seq, ts=event.ts)
            elif held is None:  # joined without a state (Redis was away): fetch it now
                self._book_refetch(channel, event)
            if outlet is not None:
                outlet.add(event)
            for line in self.lines.values():
                line.push(event, book=held)

    def _book_refetch(self, channel: str, event: Event) -> None:
        """Read a book's stored state; deltas arriving meanwhile wait, then apply on it."""
        waiting = self._book_waiting.get(channel)
        if waiting is not None:
            waiting.append(event)
            return
        self._book_waiting[channel] = [event]

        async def fetch() -> None:
            try:
                _, state = await self.store.join(channel)
            except Exception:
                logger.warning("stream: reading the book of %s failed", channel, exc_info=True)
                state = None
            held_back = self._book_waiting.pop(channel, [])
            if state is None or channel not in self.joined or channel in self.books:
                return  # the next message tries again
            held = self.books[channel] = HeldBook.from_state(state.data, seq=state.seq, ts=state.ts)
            for waited in held_back:
                if waited.seq > held.seq:
                    held.apply(waited.raw, seq=waited.seq, ts=waited.ts)

        task = asyncio.ensure_future(fetch())
        self._book_fetches.add(task)
        task.add_done_callback(self._book_fetches.discard)

    # --- housekeeping ---------------------------------------------------------------------
    async def _maintain(self) -> None:
        while self.connections or self._usage or self.joined:
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
        for channel, since in list(self.unwanted_since.items()):
            if now - since >= LEAVE_AFTER_SECONDS and not self._wanted(channel):
                self._leave(channel)
        await self._status_liveness()
        self._status_silence(now)
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
        if self.catalog.stale() and self.connections:
            await database_sync_to_async(self.catalog.load)()

    async def _status_liveness(self) -> None:
        """Notice a killed runner in seconds, not after STATUS_SILENT_SECONDS.

        A runner refreshes its liveness key every half second with a 2 s TTL; two ticks
        in a row without it (a Redis restart loses it for one at most) mean it is gone.
        """
        if not self.status_heard:
            return
        exchanges = {channel: channel.split(".", 1)[1] for channel in self.status_heard}
        try:
            alive = await asyncio.wait_for(
                asyncio.to_thread(feeds_alive, sorted(set(exchanges.values()))),
                MAINTENANCE_SECONDS,  # a hanging Redis must not hold up heartbeats
            )
        except Exception:  # Redis away: the silence rule still applies
            return
        for channel, exchange in exchanges.items():
            if exchange in alive:
                self.status_missing.pop(channel, None)
            else:
                self.status_missing[channel] += 1

    def _status_silence(self, now: float) -> None:
        """A feed process that died says nothing more: say it for it, once.

        The last report goes out again, same seq, with ``connected`` false and
        ``stale`` true; the feed's next report replaces it.
        """
        for channel, heard in list(self.status_heard.items()):
            gone = self.status_missing[channel] >= STATUS_GONE_TICKS
            if now - heard < STATUS_SILENT_SECONDS and not gone:
                continue
            self.status_missing.pop(channel, None)
            del self.status_heard[channel]
            last = self.latest.get(channel)
            data = dict(last.data) if last is not None else {}
            data.update(connected=False, stale=True, ts=now_ms())
            seq = last.seq if last is not None else 0
            event = Event.of(channel=channel, seq=seq, data=data, ts=now_ms())
            self.latest[channel] = event
            for conn in tuple(self.subscribers.get(0, {}).get(channel, ())):
                conn.deliver(event)

    async def _slots_refresh(self) -> None:
        by_org: dict[int, list[Connection]] = {}
        for conn in self.connections:
            if not conn.closed:
                by_org.setdefault(conn.organization_id, []).append(conn)
        organizations = list(by_org)
        results = await gather_bounded(
            [
                self.slots.refresh(organization_id=org, connection_ids=[c.id for c in by_org[org]])
                for org in organizations
            ]
        )
        for org, result in zip(organizations, results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("stream slot refresh failed: %s", result)
            elif result:
                await self._slots_retake(by_org[org], missing=set(result))

    async def _slots_retake(self, conns: list[Connection], *, missing: set[str]) -> None:
        """Slots that expired under open connections (a Redis outage longer than their TTL,
        or a Redis restart): taken again where the plan still has room, else closed."""
        for conn in conns:
            if conn.id not in missing:
                continue
            try:
                taken = await self.slots.retake(
                    organization_id=conn.organization_id,
                    connection_id=conn.id,
                    limit=conn.plan_connections,
                )
            except Exception as exc:  # tried again next round
                logger.warning("stream slot retake failed: %s", exc)
                continue
            if not taken:
                limit = conn.plan_connections
                message = f"Your plan allows {limit} concurrent connections."
                await conn.close(
                    CLOSE_QUOTA,
                    message,
                    farewell=frames.error(
                        code="quota_exceeded", message=message, details={"limit": limit}
                    ),
                )

    async def usage_flush(self) -> None:
        """Delivered data messages per organization, added to usage in one call each."""
        from billing.usage import stream_messages_count

        for conn in self.connections:
            if conn.delivered:
                self._usage[conn.organization_id] += conn.delivered
                conn.delivered = 0
        pending, self._usage = self._usage, Counter()
        counts = {org: n for org, n in pending.items() if n}
        if not counts:
            return
        day = time.gmtime()
        from datetime import date

        today = date(day.tm_year, day.tm_mon, day.tm_mday)

        def write() -> None:
            for org, n in counts.items():
                stream_messages_count(organization_id=org, count=n, day=today)

        await in_db_thread(write)()

    # --- stopping -------------------------------------------------------------------------
    def drain_start(self) -> list[Connection]:
        """Refuse new connections from now on; the connections to drain (taken now: the
        server is about to let go of them)."""
        self.draining = True
        return list(self.connections)

    async def drain(
        self,
        connections: list[Connection] | None = None,
        *,
        code: int = CLOSE_RESTART,
        reason: str = "Server restarting.",
    ) -> None:
        """Give every slot back, then close every connection with `code` (SIGTERM).

        Slots first: a client reconnecting the instant it reads 1012 must find its slot
        free on the next server.
        """
        connections = self.drain_start() if connections is None else connections
        by_org: dict[int, set[str]] = {}
        for conn in connections:
            by_org.setdefault(conn.organization_id, set()).add(conn.id)
            self._usage[conn.organization_id] += conn.delivered
            conn.delivered = 0
        for org, ids in self._pending_release.items():
            by_org.setdefault(org, set()).update(ids)
        self._pending_release = {}
        try:
            results = await asyncio.wait_for(
                gather_bounded(
                    [
                        self.slots.release(organization_id=org, connection_ids=sorted(ids))
                        for org, ids in by_org.items()
                    ]
                ),
                DRAIN_RELEASE_SECONDS,
            )
        except TimeoutError:
            results = [TimeoutError("slot release")]
        for result in results:
            if isinstance(result, BaseException):
                logger.warning("stream slot release on drain failed: %s", result)
        for conn in connections:
            conn.close_now(code, reason)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.usage_flush(), DRAIN_RELEASE_SECONDS)

    async def aclose(self) -> None:
        """Stop every task (tests; server shutdown)."""
        for conn in list(self.connections):
            await self.connection_remove(conn)
        if self._release_task is not None:
            with contextlib.suppress(Exception):
                await self._release_task  # slots go back before the pool closes
        for task in list(self._resumes):
            task.cancel()
        for running in (self._reader_task, self._maintenance):
            if running is not None:
                running.cancel()
                with contextlib.suppress(BaseException):
                    await running
        for line in self.lines.values():
            line.stop()
        for outlet in self.outlets.values():
            outlet.cancel()
        # Bounded: a stalled Redis must not hold a stopping process (or a test) forever.
        closing = [self.slots.aclose(), self.store.aclose()]
        if self._reader is not None:
            closing.append(self._reader.aclose())
        for close in closing:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close, CLOSE_SECONDS)


_hubs: WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = WeakKeyDictionary()


def book_snapshot(channel: str, held: HeldBook, cache: dict[str, Event]) -> Event:
    """The snapshot event of a held book, made once per state (`cache` keeps it)."""
    event = cache.get(channel)
    if event is None or event.seq != held.seq or not event.full_state:
        event = cache[channel] = Event.book_state(
            channel, seq=held.seq, ts=held.ts, raw=held.state_raw()
        )
    return event


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


def hubs_all() -> list[Hub]:
    return list(_hubs.values())
