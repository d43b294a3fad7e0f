"""One client's side of the fan-out: a bounded outgoing queue and its sender task.

The hub hands every connection the same pre-serialised frame string; the
connection only appends it to its queue. A sender task per connection writes
the queue out, one ASGI ``websocket.send`` per frame.

Slow clients never slow anyone else. When a client's queue is full the
connection stops queueing (it is *lagging*) and counts, per channel, what it
skipped. Once the sender has drained the queue to half, the client gets a
``lagged`` frame per channel (records missed and the seq range) and, for
book/ticker/candles, a fresh ``snapshot``; then updates resume. A client that
stays lagging for LAG_CLOSE_SECONDS is closed with 4029.

daphne accepts every send at once and buffers what the socket cannot take, so
"the client reads slowly" is measured where it happens: the bytes waiting in the
connection's transport. While they exceed MAX_TRANSPORT_BACKLOG the sender waits,
the queue fills, and the rules above apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from marketdata.streaming import frames
from marketdata.streaming.protocol import STATEFUL_KINDS, channel_kind

if TYPE_CHECKING:
    from marketdata.streaming.hub import Event

logger = logging.getLogger(__name__)

# Operators may tune these per deployment (and tests make them small to be quick).
QUEUE_FRAMES = int(os.environ.get("STREAM_QUEUE_FRAMES", "512"))  # ~50 s of one channel
LAG_CLOSE_SECONDS = float(os.environ.get("STREAM_LAG_CLOSE_SECONDS", "10"))
MAX_TRANSPORT_BACKLOG = int(os.environ.get("STREAM_TRANSPORT_BACKLOG_BYTES", str(512 * 1024)))
BACKLOG_POLL_SECONDS = 0.02

Send = Callable[[dict], Awaitable[None]]


def unwrap_send(send: Send) -> Send:
    """The server's own send under Channels' session wrapper.

    The wrapper only acts on ``websocket.accept`` (saving a modified session);
    market-data frames skip it, which saves work on the hottest path.
    """
    owner = getattr(send, "__self__", None)
    real = getattr(owner, "real_send", None)
    return real if real is not None else send


def backlog_probe(send: Send) -> Callable[[], int]:
    """A function returning the bytes queued in daphne's transport for this client.

    daphne passes each application ``partial(server.handle_reply, protocol)``; the
    protocol's Twisted transport keeps what the kernel has not accepted yet. Any
    other server (the test communicator) gets a probe that reports 0.
    """
    target = unwrap_send(send)
    protocol = target.args[0] if isinstance(target, functools.partial) and target.args else None
    if protocol is None or not hasattr(protocol, "transport"):
        return lambda: 0

    def backlog() -> int:
        transport = protocol.transport
        try:
            return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        except AttributeError:  # closed, or a transport of another kind
            return 0

    return backlog


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
        self._backlog = backlog_probe(send)
        self._close = close
        self._snapshot_for = snapshot_for
        self.max_frames = queue_frames
        self.frames: deque[str] = deque()
        self._wakeup = asyncio.Event()
        self.channels: set[str] = set()
        self.snapshot_pending: set[str] = set()
        self.lagging_since: float | None = None
        self.lag: dict[str, list[int]] = {}  # channel -> [records missed, from_seq, to_seq]
        self.delivered = 0  # data frames queued since the last usage flush
        self.last_sent = time.monotonic()
        self.closed = False
        self._sender: asyncio.Task | None = None
        # Set by the consumer; read by the hub's periodic re-check.
        self.api_key_id: int | None = None
        self.user_id: int | None = None
        self.plan_subscriptions = 0
        self.analytics_allowed = True

    # --- producer side (the hub, on the event loop; never awaits) -----------------------
    def push(self, frame: str) -> None:
        """A control frame (subscribed, pong, error...): always queued, small and rare."""
        if not self.closed:
            self.frames.append(frame)
            self._wakeup.set()

    def deliver(self, event: Event) -> None:
        channel = event.channel
        if self.closed or channel not in self.channels:
            return
        if self.lagging_since is not None or len(self.frames) >= self.max_frames:
            if self.lagging_since is None:
                self.lagging_since = time.monotonic()
            lag = self.lag.get(channel)
            if lag is None:
                self.lag[channel] = [event.records, event.seq, event.seq]
            else:
                lag[0] += event.records
                lag[2] = event.seq
            return
        if channel in self.snapshot_pending:
            self.snapshot_pending.discard(channel)
            self.frames.append(event.snapshot_frame)
        else:
            self.frames.append(event.update_frame)
        self.delivered += 1
        self._wakeup.set()

    def _resume(self) -> None:
        """Tell the client what it missed, give stateful channels a fresh start, go on."""
        for channel, (missed, from_seq, to_seq) in self.lag.items():
            if channel not in self.channels:
                continue
            self.frames.append(
                frames.lagged(channel=channel, missed=missed, from_seq=from_seq, to_seq=to_seq)
            )
            if channel_kind(channel) in STATEFUL_KINDS:
                event = self._snapshot_for(channel, self.delay)
                if event is not None and event.seq >= to_seq:
                    self.frames.append(event.snapshot_frame)
                    self.delivered += 1
                else:
                    self.snapshot_pending.add(channel)
        self.lag.clear()
        self.lagging_since = None

    # --- consumer side ------------------------------------------------------------------
    def start(self) -> None:
        self._sender = asyncio.ensure_future(self._run_sender())

    async def _run_sender(self) -> None:
        send, backlog, frames_ = self._send, self._backlog, self.frames
        low_water = self.max_frames // 2
        try:
            while not self.closed:
                if not frames_:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                # Twisted offers no drain signal through ASGI: poll the backlog.
                await self._wait_for_transport(backlog)
                if self.closed:
                    break
                await send({"type": "websocket.send", "text": frames_.popleft()})
                self.last_sent = time.monotonic()
                if self.lagging_since is not None and len(frames_) <= low_water:
                    self._resume()
        except asyncio.CancelledError:
            raise
        except Exception:  # the client went away mid-send; the disconnect handler cleans up
            logger.debug("stream sender for %s stopped", self.id, exc_info=True)

    async def _wait_for_transport(self, backlog: Callable[[], int]) -> None:
        while not self.closed and backlog() > MAX_TRANSPORT_BACKLOG:  # noqa: ASYNC110
            await asyncio.sleep(BACKLOG_POLL_SECONDS)

    def lagging_for(self, now: float) -> float:
        return 0.0 if self.lagging_since is None else now - self.lagging_since

    async def close(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self._wakeup.set()
        with contextlib.suppress(Exception):
            await self._close(code, reason)

    async def stop(self) -> None:
        """Stop the sender (after disconnect)."""
        self.closed = True
        self._wakeup.set()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(BaseException):
                await self._sender
