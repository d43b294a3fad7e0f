"""Delay lines: the same messages, released `delay` seconds after publication.

The hub keeps one line per delay value in use. Every message of every channel
the hub listens to enters each line and is released when its publish time plus
the delay has passed, with its original ``seq``. A delayed connection's
snapshots come from what its line has released, never from the real-time
state, so nothing real-time reaches it.

``entries`` holds what the hub heard live. A line only holds what its hub heard
while it listened; when a delayed subscription finds the line without the last
`delay` seconds of a channel, ``seed`` reads them once from the channel's stored
history (store.py) into ``replay``: all of it older than the channel's first
live entry, so a channel's replay goes out before its live entries and ``seq``
runs on without a gap or a repeat. Stored messages are not parsed (events.py),
so a seed costs a read and one small object per message.

Books are deltas, so a line holds each book's released state itself (``books``):
from the hub's book as it stood at the channel's first live entry, or, when
seeded, from the stored keyframe (the full book, about once a second) before the
window, with the deltas after it applied as they are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from typing import TYPE_CHECKING

from marketdata.streaming.books import HeldBook
from marketdata.streaming.events import Event
from marketdata.streaming.protocol import STATEFUL_KINDS, channel_kind
from marketdata.streaming.store import StoredMessage
from marketdata.streaming.timing import now_ms

if TYPE_CHECKING:
    from marketdata.streaming.hub import Hub

logger = logging.getLogger(__name__)


class DelayLine:
    def __init__(self, hub: Hub, delay_seconds: int) -> None:
        self.hub, self.delay = hub, delay_seconds
        self.delay_ms = delay_seconds * 1000
        self.entries: deque[tuple[int, Event]] = deque()
        self.latest: dict[str, Event] = {}  # released state of stateful channels
        self.books: dict[str, HeldBook] = {}  # released state of book channels
        self.bases: dict[str, HeldBook] = {}  # the hub's book at a channel's first live entry
        self.replay: dict[str, deque[tuple[int, Event]]] = {}
        self.first: dict[str, tuple[int, int]] = {}  # (ts, seq) of a channel's first live entry
        self.replayed: dict[str, tuple[int, int]] = {}  # (ts, seq) of the last replayed
        self.complete_from: dict[str, int] = {}  # history held from then on (seeded channels)
        self._seeds: dict[str, asyncio.Future[None]] = {}
        self._forgotten: Counter[str] = Counter()
        self._wakeup = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    def push(self, event: Event, *, book: HeldBook | None = None) -> None:
        """A message the hub heard; for a book, `book` is the hub's state after it."""
        channel = event.channel
        if (
            book is not None
            and book.seq == event.seq
            and channel not in self.first
            and channel not in self.books
        ):
            self.bases[channel] = book.copy()
        replayed = self.replayed.get(channel)
        if replayed is not None:
            if (event.ts, event.seq) <= replayed:
                return  # in flight when the history was read: already in the replay
            del self.replayed[channel]  # later messages are newer still
        if channel not in self.first:
            self.first[channel] = (event.ts, event.seq)
        self.entries.append((event.ts + self.delay_ms, event))
        self._wakeup.set()

    def snapshot(self, channel: str) -> Event | None:
        """What a connection of this delay starts `channel` with."""
        held = self.books.get(channel)
        if held is not None:
            from marketdata.streaming.hub import book_snapshot

            return book_snapshot(channel, held, self.latest)
        return None if channel_kind(channel) == "book" else self.latest.get(channel)

    def forget(self, channel: str) -> None:
        self.latest.pop(channel, None)
        self.books.pop(channel, None)
        self.bases.pop(channel, None)
        self.entries = deque(e for e in self.entries if e[1].channel != channel)
        for held in (self.replay, self.first, self.replayed, self.complete_from):
            held.pop(channel, None)
        self._forgotten[channel] += 1

    # --- history from the store -----------------------------------------------------------
    def complete(self, channel: str, now: int) -> bool:
        """Whether the line holds every message of `channel` from `delay` ago on."""
        since = self.complete_from.get(channel)
        if since is None:
            first = self.first.get(channel)
            since = None if first is None else first[0]
        return since is not None and since <= now - self.delay_ms

    async def seed(self, channel: str) -> None:
        """Fill the channel's missing history from the store, once per gap.

        Subscribers arriving while a read is in flight wait for the same read.
        """
        if self.complete(channel, now_ms()):
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
        book = channel_kind(channel) == "book"
        stateful = channel_kind(channel) in STATEFUL_KINDS
        start = now_ms() - self.delay_ms
        first = self.first.get(channel)
        keyframe = None
        try:
            if book and channel not in self.books:
                keyframe = await self.hub.store.keyframe(channel, at_or_before_ms=start)
            previous, entries = await self.hub.store.between(
                channel,
                start_ms=start if keyframe is None else min(start, keyframe.ts),
                end_ms=None if first is None else first[0],
                previous=stateful and not book and channel not in self.latest,
            )
        except Exception:  # as without history: the line fills itself; a later subscriber retries
            logger.warning("stream history read for %s failed", channel, exc_info=True)
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
        held = None
        replayed: tuple[int, int] | None = None
        queue: deque[tuple[int, Event]] = deque()
        if keyframe is not None and channel not in self.books:
            entries = [e for e in entries if e.seq > keyframe.seq]
            if keyframe.ts <= start:
                held = HeldBook.from_state(keyframe.data, seq=keyframe.seq, ts=keyframe.ts)
            elif first is None or (keyframe.ts, keyframe.seq) < first:
                # The book is younger than the delay: its first state is released later.
                state = Event.book_state(
                    channel, seq=keyframe.seq, ts=keyframe.ts, raw=keyframe.data
                )
                queue.append((keyframe.ts + self.delay_ms, state))
                replayed = (keyframe.ts, keyframe.seq)
        released: StoredMessage | None = None
        last = None
        for entry in entries:
            if first is not None and entry.order >= first:
                break
            last = entry
            if entry.ts + self.delay_ms <= now:
                released = entry  # older than the delay: only the latest state counts
                if held is not None:
                    held.apply(entry.data, seq=entry.seq, ts=entry.ts)
            else:
                queue.append((entry.ts + self.delay_ms, Event.stored(channel, entry)))
        if held is not None and channel not in self.books:
            self.books[channel] = held
            self._snapshots_send(channel)
        if last is not None:
            replayed = last.order
        if replayed is None:
            return
        self.replayed[channel] = replayed
        if queue:
            self.replay[channel] = queue
            self._wakeup.set()
        if released is not None and stateful and not book and channel not in self.latest:
            self.latest[channel] = Event.stored(channel, released)
            self._snapshots_send(channel)

    def _snapshots_send(self, channel: str) -> None:
        event = self.snapshot(channel)
        if event is None:
            return
        for conn in self.hub.subscribers.get(self.delay, {}).get(channel, ()):
            if channel in conn.snapshot_pending:
                conn.snapshot_pending.discard(channel)
                conn.push_snapshot(event)

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
        # Replayed entries first: each precedes its channel's live entries.
        for channel in list(self.replay):
            queue = self.replay[channel]
            while queue and queue[0][0] <= now:
                self._deliver(queue.popleft()[1])
            if not queue:
                del self.replay[channel]
        entries = self.entries
        while entries and entries[0][0] <= now:
            self._deliver(entries.popleft()[1])

    def _deliver(self, event: Event) -> None:
        channel = event.channel
        kind = channel_kind(channel)
        if kind == "book" and event.full_state:  # a seeded book's first released state
            if channel not in self.books:
                self.books[channel] = HeldBook.from_state(event.raw, seq=event.seq, ts=event.ts)
                self._snapshots_send(channel)
            return
        if kind == "book":
            held = self.books.get(channel)
            base = self.bases.get(channel)
            if base is not None and base.seq <= event.seq and (held is None or held.seq < base.seq):
                held = self.books[channel] = self.bases.pop(channel)  # includes this message
            elif held is not None and event.seq > held.seq:
                held.apply(event.raw, seq=event.seq, ts=event.ts)
        elif kind in STATEFUL_KINDS:
            self.latest[channel] = event
        self.hub.outlet(self.delay, event.channel).add(event)

    def stop(self) -> None:
        self._task.cancel()
        for seeding in self._seeds.values():
            seeding.cancel()
