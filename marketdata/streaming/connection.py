"""One client's side of the fan-out: a bounded outgoing queue and its writer.

The hub hands every connection the same pre-serialised message; under daphne
that is the finished WebSocket frame (bytes), which the connection writes
straight into the client's Twisted transport: at once, from the hub's loop,
when nothing is queued and the client keeps up, else from its writer task. No
per-client task switch, ASGI message, encode or framing on the hot path (see
``TransportWriter``). Under any other server (the test communicator) a sender
task sends the JSON strings as ASGI ``websocket.send`` messages.

Per subscription, ``conflate_ms`` N > 0 sends at most one frame of the channel
every N ms (the messages in between merged: events.py); 0 sends each as soon as
the connection can take it.

While a resume is read from the store, the channel's live messages wait in
``resuming``; afterwards ``floors`` drops anything the resume already carried.

Books: a subscription's ``depth`` (``depths``) picks the view of the book it is
sent, its snapshot cut to that depth and the deltas of that view (books.py).

Control frames (errors, pongs, ``subscribed``) count against the same bound:
a client that sends requests and reads nothing is closed with 4029.

Slow clients never slow anyone else. When a client's queue is full the
connection stops queueing (it is *lagging*) and counts, per channel, what it
skipped. Once the writer has drained the queue to half, the client gets a
``lagged`` frame per channel (records missed and the seq range) and, for
book/ticker/candles, a fresh ``snapshot``; then updates resume. A client that
stays lagging for LAG_CLOSE_SECONDS is closed with 4029.

Twisted accepts every write at once and buffers what the socket cannot take, so
"the client reads slowly" is measured where it happens: the bytes waiting in the
connection's transport. While they exceed MAX_TRANSPORT_BACKLOG nothing more is
written, the queue fills, and the rules above apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sized
from typing import Any, Protocol, cast

from marketdata.streaming import frames
from marketdata.streaming.books import is_book_channel
from marketdata.streaming.events import Event, event_after, events_merge
from marketdata.streaming.metrics import STREAM_LAGGED, STREAM_LAGGED_MISSED
from marketdata.streaming.protocol import STATEFUL_KINDS, channel_kind

logger = logging.getLogger(__name__)

# Operators may tune these per deployment (and tests make them small to be quick).
QUEUE_FRAMES = int(os.environ.get("STREAM_QUEUE_FRAMES", "512"))  # ~50 s of one channel
LAG_CLOSE_SECONDS = float(os.environ.get("STREAM_LAG_CLOSE_SECONDS", "10"))
MAX_TRANSPORT_BACKLOG = int(os.environ.get("STREAM_TRANSPORT_BACKLOG_BYTES", str(512 * 1024)))
BACKLOG_POLL_SECONDS = 0.02
CONTROL_SLACK = 64  # control frames allowed past a full queue before the client is closed
CLOSE_LAGGING = 4029

Send = Callable[[dict[str, Any]], Awaitable[None]]  # ASGI: messages are open dicts


class TwistedTransport(Protocol):
    """What the stream uses of a Twisted TCP transport. Private attributes included on
    purpose: Twisted counts the bytes the kernel has not taken nowhere public."""

    @property
    def dataBuffer(self) -> bytes: ...
    @property
    def offset(self) -> int: ...
    @property
    def _tempDataLen(self) -> int: ...
    @property
    def TLS(self) -> bool: ...
    @property
    def disconnecting(self) -> int: ...
    @property
    def connected(self) -> int: ...

    def writeSomeData(self, data: bytes) -> int | BaseException: ...

    def write(self, data: bytes) -> None: ...


class AutobahnProtocol(Protocol):
    """daphne's WebSocket protocol (autobahn's server protocol), as far as used here."""

    transport: TwistedTransport
    state: int
    STATE_OPEN: int
    send_queue: Sized

    def sendCloseFrame(
        self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False
    ) -> None: ...


def unwrap_send(send: Send) -> Send:
    """The server's own send under Channels' session wrapper.

    The wrapper only acts on ``websocket.accept`` (saving a modified session);
    market-data frames skip it, which saves work on the hottest path.
    """
    owner = getattr(send, "__self__", None)
    real = getattr(owner, "real_send", None)
    return real if real is not None else send


def _daphne_protocol(send: Send) -> AutobahnProtocol | None:
    """daphne passes each application ``partial(server.handle_reply, protocol)``."""
    target = unwrap_send(send)
    protocol = target.args[0] if isinstance(target, functools.partial) and target.args else None
    if protocol is None or not hasattr(protocol, "transport"):
        return None
    return cast("AutobahnProtocol", protocol)


def _transport_backlog(transport: TwistedTransport) -> int:
    """Bytes Twisted holds for this client that the kernel has not accepted yet."""
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except AttributeError:  # closed, or a transport of another kind
        return 0


def backlog_probe(send: Send) -> Callable[[], int]:
    """A function returning the bytes queued in daphne's transport for this client.

    The protocol's Twisted transport keeps what the kernel has not accepted yet.
    Any other server (the test communicator) gets a probe that reports 0.
    """
    protocol = _daphne_protocol(send)
    if protocol is None:
        return lambda: 0
    return lambda: _transport_backlog(protocol.transport)


def close_frame_send(protocol: AutobahnProtocol | None, *, code: int, reason: str) -> bool:
    """Start autobahn's closing handshake with any code, 1012 and 1013 included.

    autobahn's ``sendClose`` (what daphne's ASGI close calls) accepts only 1000 and
    3000-4999 and raises for the rest, which daphne swallows: a client would see the
    socket drop (1006) instead of "restarting" or "try again later".
    """
    if protocol is None or protocol.state != protocol.STATE_OPEN:
        return False
    try:
        protocol.sendCloseFrame(code=code, reasonUtf8=reason[:120].encode(), isReply=False)
    except Exception:
        logger.warning("stream: sending close %s failed", code, exc_info=True)
        return False
    return True


def close_send(send: Send, *, code: int, reason: str) -> bool:
    """`close_frame_send` for the connection behind an ASGI `send` (False: not daphne)."""
    return close_frame_send(_daphne_protocol(send), code=code, reason=reason)


class TransportWriter:
    """Writes finished WebSocket frames straight into daphne's Twisted transport.

    Why: through ASGI each frame costs a coroutine hop, daphne's ``handle_reply``,
    a UTF-8 encode and autobahn's framing, per client (~100 us, measured); a
    server-to-client frame is unmasked, so the bytes on the wire are the same for
    every client and are built once per message (``frames.wire``). Used only when
    that is exactly what autobahn would send: the handshake is done (state OPEN),
    no per-message compression was negotiated (daphne accepts none), and autobahn
    has nothing queued of its own. Anything else keeps the ASGI path.
    """

    __slots__ = ("_direct", "protocol", "transport")

    def __init__(self, protocol: AutobahnProtocol) -> None:
        from twisted.internet import tcp

        self.protocol = protocol
        self.transport = protocol.transport
        # Plain TCP only for the immediate send: under TLS the bytes must go
        # through the TLS layer, which transport.write does.
        self._direct = isinstance(self.transport, tcp.Connection) and not self.transport.TLS

    @classmethod
    def for_send(cls, send: Send) -> TransportWriter | None:
        protocol = _daphne_protocol(send)
        if protocol is None or getattr(protocol, "STATE_OPEN", None) is None:
            return None
        if getattr(protocol, "_perMessageCompress", None) is not None:
            return None  # compressed frames differ per client: let autobahn frame them
        if not hasattr(protocol, "send_queue"):
            return None
        return cls(protocol)

    def backlog(self) -> int:
        return _transport_backlog(self.transport)

    def ready(self) -> bool:
        """Open, in order with autobahn's own frames, and the client keeps up."""
        protocol = self.protocol
        return (
            protocol.state == protocol.STATE_OPEN
            and not protocol.send_queue
            and _transport_backlog(self.transport) <= MAX_TRANSPORT_BACKLOG
        )

    def write(self, wire: bytes) -> None:
        """Send now if the socket takes it (the common case), else leave it to Twisted.

        Twisted's ``write`` only buffers and registers the socket for writing, which
        costs two epoll changes and a loop turn per frame; when nothing is buffered,
        sending at once is what its ``doWrite`` would do next anyway.
        """
        transport = self.transport
        if self._direct and not transport.disconnecting and not _transport_backlog(transport):
            if not transport.connected:
                return
            sent = transport.writeSomeData(wire)
            if not isinstance(sent, int):  # connection lost: Twisted's write path reports it
                transport.write(wire)
                return
            if sent == len(wire):
                return
            wire = wire[sent:]
        transport.write(wire)


class Connection:
    """What the hub knows of one authenticated client."""

    def __init__(
        self,
        *,
        connection_id: str,
        organization_id: int,
        delay_seconds: int,
        send: Send,
        close: Callable[[int, str], Awaitable[None]],
        snapshot_for: Callable[[str, int], Event | None],
        queue_frames: int = QUEUE_FRAMES,
    ) -> None:
        self.id = connection_id
        self.organization_id = organization_id
        self.delay = delay_seconds
        self._send = unwrap_send(send)
        self._writer = TransportWriter.for_send(send)
        self._backlog = backlog_probe(send)
        self._close = close
        self._snapshot_for = snapshot_for
        self.max_frames = queue_frames
        # Wire bytes when writing to the transport, else JSON strings for ASGI sends.
        self.frames: deque[bytes | str] = deque()
        self._wakeup = asyncio.Event()
        self.channels: set[str] = set()
        self.added: dict[str, None] = {}  # the same channels, oldest subscription first (hub)
        self.snapshot_pending: set[str] = set()
        self.conflate: dict[str, int] = {}  # channel -> conflate_ms (> 0 only)
        self.depths: dict[str, int] = {}  # book channel -> depth, when below the full depth
        self._conflated: dict[str, list[Event]] = {}
        self._conflate_timers: dict[str, asyncio.TimerHandle] = {}
        self._conflate_sent: dict[str, float] = {}
        self.resuming: dict[str, list[Event]] = {}  # channel -> live messages held back
        self.floors: dict[str, int] = {}  # channel -> the last seq a resume sent
        self.lagging_since: float | None = None
        self.lag: dict[str, list[int]] = {}  # channel -> [records missed, from_seq, to_seq]
        self.delivered = 0  # data frames queued since the last usage flush
        self.last_sent = time.monotonic()
        self.closed = False
        self._sender: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        # Set by the consumer; kept to the current plan by the hub's periodic re-check.
        self.api_key_id: int | None = None
        self.user_id: int | None = None
        self.session_key: str | None = None
        self.plan_subscriptions = 0
        self.analytics_allowed = True
        self.plan_book_depth = 50  # most levels a side a book subscription may ask for
        self.conflate_floor_ms = 0  # least conflate_ms a subscription gets
        # A connection limit this connection's slot is known to be within (quotas.py).
        self.plan_connections = 0

    # --- producer side (the hub, on the event loop; never awaits) -----------------------
    def push(self, frame: str) -> None:
        """A control frame (subscribed, pong, error...): queued in order with the data.

        Bounded like the data: past the queue's size (plus a little slack, so a lagging
        client still hears why), the client is closed with 4029.
        """
        if self.closed:
            return
        if len(self.frames) >= self.max_frames + CONTROL_SLACK:
            self._closing = asyncio.ensure_future(self.close(CLOSE_LAGGING, "Reading too slowly."))
            return
        self.frames.append(frames.wire(frame.encode()) if self._writer else frame)
        self._wakeup.set()

    def push_snapshot(self, event: Event) -> None:
        """A snapshot of a stateful channel (on subscribe): always queued, counted."""
        if self.depths and event.channel in self.depths:
            event = event.at_depth(self.depths[event.channel])
        if event.channel in self.conflate:  # the snapshot opens the channel's first window
            self._conflate_sent[event.channel] = asyncio.get_running_loop().time()
        if not self.closed:
            self.frames.append(event.snapshot_wire if self._writer else event.snapshot_frame)
            self.delivered += 1
            self._wakeup.set()

    def push_data(self, event: Event) -> None:
        """An update outside the live path (a resume's backlog): queued, counted."""
        if self.depths and event.channel in self.depths:
            event = event.at_depth(self.depths[event.channel])
        if not self.closed:
            self.frames.append(event.update_wire if self._writer else event.update_frame)
            self.delivered += 1
            self._wakeup.set()

    def push_counted(self, frame: str) -> None:
        """A data frame built for this client alone (a replay's): queued, counted."""
        if not self.closed:
            self.frames.append(frames.wire(frame.encode()) if self._writer else frame)
            self.delivered += 1
            self._wakeup.set()

    def resume_done(self, channel: str, *, floor: int | None) -> None:
        """The resume of `channel` has been sent up to `floor`: release what waited."""
        held = self.resuming.pop(channel, [])
        if floor is not None:
            self.floors[channel] = floor
        for event in held:
            self.deliver(event)

    def forget(self, channel: str) -> None:
        """Unsubscribed: nothing of `channel` is sent from now on."""
        self.channels.discard(channel)
        self.added.pop(channel, None)
        self.snapshot_pending.discard(channel)
        self.lag.pop(channel, None)
        self.resuming.pop(channel, None)
        self.floors.pop(channel, None)
        self.conflate.pop(channel, None)
        self.depths.pop(channel, None)
        self._conflated.pop(channel, None)
        self._conflate_sent.pop(channel, None)
        timer = self._conflate_timers.pop(channel, None)
        if timer is not None:
            timer.cancel()

    def deliver(self, event: Event) -> None:
        """Hand one published message to this client: the hub calls it for every subscriber."""
        channel = event.channel
        if self.closed or channel not in self.channels:
            return
        if self.resuming:
            held = self.resuming.get(channel)
            if held is not None:
                held.append(event)
                return
        if self.depths and channel in self.depths:
            event = event.at_depth(self.depths[channel])
        if self.floors:
            floor = self.floors.get(channel)
            if floor is not None:
                after = event_after(event, floor)
                if after is None:
                    return
                event = after
                del self.floors[channel]  # later messages are newer still
        if self.conflate and channel in self.conflate:
            self._conflate(event)
            return
        self.emit(event)

    def _conflate(self, event: Event) -> None:
        """At most one frame per `conflate_ms`: the first after a quiet window goes at once."""
        channel = event.channel
        self._conflated.setdefault(channel, []).append(event)
        if channel in self._conflate_timers:
            return
        loop = asyncio.get_running_loop()
        window = self.conflate[channel] / 1000
        wait = self._conflate_sent.get(channel, float("-inf")) + window - loop.time()
        self._conflate_timers[channel] = loop.call_later(
            max(0.0, wait), self._conflate_flush, channel
        )

    def _conflate_flush(self, channel: str) -> None:
        self._conflate_timers.pop(channel, None)
        held = self._conflated.pop(channel, None)
        if not held or self.closed or channel not in self.channels:
            return
        self._conflate_sent[channel] = asyncio.get_running_loop().time()
        self.emit(events_merge(held))

    def emit(self, event: Event) -> None:
        """Send one frame of the channel now, or queue it, or count it as missed.

        The hot path of the fan-out: when nothing is queued and the client keeps up,
        the shared frame bytes go straight to the socket, with no task switch.
        """
        channel = event.channel
        if self.closed or channel not in self.channels:
            return
        frames_ = self.frames
        if self.lagging_since is not None or len(frames_) >= self.max_frames:
            if self.lagging_since is None:
                self.lagging_since = time.monotonic()
            lag = self.lag.get(channel)
            if lag is None:
                self.lag[channel] = [event.records, event.seq, event.seq]
            else:
                lag[0] += event.records
                lag[2] = event.seq
            return
        if self.snapshot_pending and channel in self.snapshot_pending and is_book_channel(channel):
            self._book_start(event)
            return
        self.delivered += 1
        writer = self._writer
        if self.snapshot_pending and channel in self.snapshot_pending:
            self.snapshot_pending.discard(channel)
            frames_.append(event.snapshot_wire if writer else event.snapshot_frame)
        elif writer is None:
            frames_.append(event.update_frame)
        elif not frames_ and writer.ready():
            writer.write(event.update_wire)
            self.last_sent = time.monotonic()
            return
        else:
            frames_.append(event.update_wire)
        self._wakeup.set()

    def _book_start(self, event: Event) -> None:
        """A book waiting for its snapshot: a delta is no start, the held state is."""
        snapshot = self._snapshot_for(event.channel, self.delay)
        if snapshot is None or snapshot.seq < event.seq:
            return  # the state arrives with a later message
        self.snapshot_pending.discard(event.channel)
        self.push_snapshot(snapshot)
        if snapshot.seq > event.seq:
            self.floors[event.channel] = snapshot.seq  # messages it already holds

    def _resume(self) -> None:
        """Tell the client what it missed, give stateful channels a fresh start, go on."""
        for channel, (missed, from_seq, to_seq) in self.lag.items():
            if channel not in self.channels:
                continue
            self.push(
                frames.lagged(channel=channel, missed=missed, from_seq=from_seq, to_seq=to_seq)
            )
            STREAM_LAGGED.inc()
            STREAM_LAGGED_MISSED.inc(missed)
            if channel_kind(channel) in STATEFUL_KINDS:
                event = self._snapshot_for(channel, self.delay)
                if event is not None and event.seq >= to_seq:
                    self.push_snapshot(event)
                else:
                    self.snapshot_pending.add(channel)
        self.lag.clear()
        self.lagging_since = None

    # --- consumer side ------------------------------------------------------------------
    def start(self) -> None:
        run = self._run_writer if self._writer is not None else self._run_sender
        self._sender = asyncio.ensure_future(run())

    async def _run_writer(self) -> None:
        """Drain the queue into daphne's transport while the client keeps up."""
        # Started only with a writer, whose queue holds wire bytes (push, emit).
        writer = cast("TransportWriter", self._writer)
        frames_ = cast("deque[bytes]", self.frames)
        low_water = self.max_frames // 2
        try:
            while not self.closed:
                if not frames_:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                # Twisted offers no drain signal through ASGI: poll the backlog.
                if not writer.ready():
                    await asyncio.sleep(BACKLOG_POLL_SECONDS)
                    continue
                while frames_ and writer.ready():
                    writer.write(frames_.popleft())
                self.last_sent = time.monotonic()
                if self.lagging_since is not None and len(frames_) <= low_water:
                    self._resume()
        except asyncio.CancelledError:
            raise
        except Exception:  # the client went away mid-write; the disconnect handler cleans up
            logger.debug("stream writer for %s stopped", self.id, exc_info=True)

    async def _run_sender(self) -> None:
        """The ASGI path (any server other than daphne over plain sockets; the tests)."""
        send, backlog, frames_ = self._send, self._backlog, self.frames
        low_water = self.max_frames // 2
        try:
            while not self.closed:
                if not frames_:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if not await self._wait_for_transport(backlog):
                    break
                await send({"type": "websocket.send", "text": frames_.popleft()})
                self.last_sent = time.monotonic()
                if self.lagging_since is not None and len(frames_) <= low_water:
                    self._resume()
        except asyncio.CancelledError:
            raise
        except Exception:  # the client went away mid-send; the disconnect handler cleans up
            logger.debug("stream sender for %s stopped", self.id, exc_info=True)

    async def _wait_for_transport(self, backlog: Callable[[], int]) -> bool:
        """Wait while the client's transport is backed up; False: closed meanwhile."""
        while not self.closed and backlog() > MAX_TRANSPORT_BACKLOG:  # noqa: ASYNC110
            await asyncio.sleep(BACKLOG_POLL_SECONDS)
        return not self.closed

    def channels_by_age(self) -> list[str]:
        """Subscribed channels, oldest subscription first."""
        ordered = [c for c in self.added if c in self.channels]
        return ordered + sorted(self.channels.difference(ordered))

    def lagging_for(self, now: float) -> float:
        return 0.0 if self.lagging_since is None else now - self.lagging_since

    async def close(self, code: int, reason: str = "", *, farewell: str | None = None) -> None:
        """Close with `code`; frames still queued are dropped.

        `farewell` (an error frame) goes straight through the server ahead of the
        close, so the client reads why: daphne does not pass a close reason on.
        """
        if self.closed:
            return
        self.closed = True
        self._wakeup.set()
        self._timers_cancel()
        with contextlib.suppress(Exception):
            if farewell is not None:
                await self._send({"type": "websocket.send", "text": farewell})
            await self._close(code, reason)

    def close_now(self, code: int, reason: str) -> None:
        """Write the close frame at once (the process is stopping), even if the
        application side already let go of the connection: under daphne straight to
        autobahn, else through ASGI."""
        self._wakeup.set()
        self._timers_cancel()
        if self._writer is None:
            if not self.closed:
                self._closing = asyncio.ensure_future(self.close(code, reason))
            return
        self.closed = True
        close_frame_send(self._writer.protocol, code=code, reason=reason)

    def _timers_cancel(self) -> None:
        for timer in self._conflate_timers.values():
            timer.cancel()
        self._conflate_timers.clear()

    async def stop(self) -> None:
        """Stop the sender (after disconnect)."""
        self._timers_cancel()
        self.closed = True
        self._wakeup.set()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(BaseException):
                await self._sender
