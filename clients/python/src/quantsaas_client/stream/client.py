"""The asyncio stream: connect, authenticate, subscribe, and survive dropped connections.

``async for event in Stream([...])`` yields typed events (stream/events.py).
Across a dropped connection it reconnects with jittered backoff (at once
after close 1012, a server restart) and sends ``resume`` with the last ``seq``
of every channel, so updates continue where they stopped: each ``seq``
reaches the consumer once (overlaps are dropped), and anything the server
could not re-send is reported as an event rather than silently skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from quantsaas_client._retry import Backoff
from quantsaas_client._version import __version__
from quantsaas_client.errors import (
    StreamAuthenticationFailed,
    StreamClosed,
    StreamPlanRequired,
)
from quantsaas_client.stream.book import ChecksumFn, OrderBook, crc32_checksum
from quantsaas_client.stream.events import (
    ChecksumMismatch,
    Event,
    Gap,
    Heartbeat,
    Lagged,
    Other,
    Pong,
    Reconnecting,
    ResumeUnavailable,
    Snapshot,
    StreamErrorFrame,
    Subscribed,
    Unsubscribed,
    Update,
    Welcome,
)
from quantsaas_client.stream.sequencer import Sequencer, Verdict

SERVICE_RESTART = 1012  # the server is restarting: reconnect at once and resume
FATAL_CLOSES = {4001: StreamAuthenticationFailed, 4003: StreamPlanRequired}
_NETWORK_ERRORS = (OSError, asyncio.TimeoutError, InvalidHandshake, EOFError)


def default_ws_url() -> str:
    base = (os.environ.get("QUANTSAAS_URL") or "http://127.0.0.1:8000").rstrip("/")
    scheme, _, rest = base.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws/v1/stream"


@dataclass
class StreamStats:
    connections: int = 0
    reconnects: int = 0
    duplicates_dropped: int = 0
    gaps: int = 0
    lagged: int = 0
    checksum_mismatches: int = 0
    rtt: float | None = None  # seconds, from the last ping's pong


class Stream:
    """A subscription to ``channels`` (``<kind>.<exchange>.<SYMBOL>``) that stays up.

    Options: ``reconnect`` (default True) and ``max_reconnects`` (None: for
    ever); ``backoff`` for the waits between attempts; ``ping_interval`` for
    the protocol ``ping`` (its pong measures ``stats.rtt``) and the WebSocket
    keepalive that detects a dead connection (``ping_timeout``);
    ``heartbeats`` to also yield ``Heartbeat`` and ``Pong``; ``conflate_ms``
    and ``depth`` go to ``subscribe``; ``checksum`` verifies book deltas.
    Fatal closes raise: 4001 ``StreamAuthenticationFailed``, 4003
    ``StreamPlanRequired``.
    """

    def __init__(
        self,
        channels: Sequence[str],
        *,
        api_key: str | None = None,
        url: str | None = None,
        reconnect: bool = True,
        max_reconnects: int | None = None,
        backoff: Backoff | None = None,
        ping_interval: float = 15.0,
        ping_timeout: float = 10.0,
        open_timeout: float = 10.0,
        stable_after: float = 10.0,
        heartbeats: bool = False,
        conflate_ms: int | None = None,
        depth: int | None = None,
        checksum: ChecksumFn = crc32_checksum,
        resume: bool = True,
    ) -> None:
        if isinstance(channels, str):
            channels = [channels]
        self.channels: list[str] = list(dict.fromkeys(channels))
        self.api_key = api_key or os.environ.get("QUANTSAAS_API_KEY") or None
        self.url = url or default_ws_url()
        self.reconnect = reconnect
        self.max_reconnects = max_reconnects
        self.backoff = backoff or Backoff(base=0.5, cap=30.0)
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.open_timeout = open_timeout
        self.stable_after = stable_after
        self.heartbeats = heartbeats
        self.conflate_ms = conflate_ms
        self.depth = depth
        self.checksum = checksum
        # None: not known yet; False: the server answered that it has no resume op.
        self.resume_supported: bool | None = None if resume else False
        self.sequencer = Sequencer()
        self.books: dict[str, OrderBook] = {}
        self.stats = StreamStats()
        self._stale_books: set[str] = set()  # delta books waiting for a fresh snapshot
        self._resuming: set[str] = set()
        self._ws: Any = None
        self._closing = False
        self._last_error: dict[str, Any] | None = None
        self._pings: dict[int, float] = {}

    # --- control ------------------------------------------------------------------------
    def __aiter__(self) -> AsyncIterator[Event]:
        return self.events()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop: the iteration ends after the connection closes."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()

    async def subscribe(self, channels: Sequence[str]) -> None:
        new = [c for c in dict.fromkeys(channels) if c not in self.channels]
        self.channels.extend(new)
        if new and self._ws is not None:
            await self._send({"op": "subscribe", "channels": new, **self._subscribe_options()})

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        gone = [c for c in dict.fromkeys(channels) if c in self.channels]
        for channel in gone:
            self.channels.remove(channel)
            self.sequencer.forget(channel)
            self.books.pop(channel, None)
        if gone and self._ws is not None:
            await self._send({"op": "unsubscribe", "channels": gone})

    async def _send(self, message: dict[str, Any]) -> None:
        await self._ws.send(json.dumps(message, separators=(",", ":")))

    def _subscribe_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.conflate_ms is not None:
            options["conflate_ms"] = self.conflate_ms
        if self.depth is not None:
            options["depth"] = self.depth
        return options

    # --- the connection loop ------------------------------------------------------------
    async def events(self) -> AsyncGenerator[Event, None]:
        attempt = 0
        while not self._closing:
            code: int | None = None
            reason = ""
            connected_at: float | None = None
            pinger: asyncio.Task[None] | None = None
            self._last_error = None
            ws = None
            try:
                ws = await connect(
                    self.url,
                    additional_headers=self._headers(),
                    user_agent_header=f"quantsaas-client/{__version__}",
                    open_timeout=self.open_timeout,
                    ping_interval=self.ping_interval,
                    ping_timeout=self.ping_timeout,
                    close_timeout=2,
                    max_size=2**24,
                )
                self._ws = ws
                welcome = await self._welcome(ws)
                connected_at = time.monotonic()
                self.stats.connections += 1
                yield Welcome(
                    plan=welcome.get("plan", ""),
                    limits=dict(welcome.get("limits") or {}),
                    reconnect=self.stats.connections > 1,
                )
                await self._subscribe_all()
                pinger = asyncio.ensure_future(self._pinger(ws))
                while True:
                    frame = json.loads(await ws.recv())
                    for event in await self._handle(frame):
                        yield event
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                reason = exc.rcvd.reason if exc.rcvd is not None else "connection lost"
            except InvalidURI:
                raise
            except _NETWORK_ERRORS as exc:
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self._ws = None
                if pinger is not None:
                    pinger.cancel()
                if ws is not None:
                    await ws.close()
            if self._closed_by_caller():
                return
            fatal = FATAL_CLOSES.get(code or 0)
            if fatal is not None:
                raise fatal(code, reason, self._last_error)
            if not self.reconnect or (
                self.max_reconnects is not None and self.stats.reconnects >= self.max_reconnects
            ):
                raise StreamClosed(code, reason, self._last_error)
            if connected_at is not None and time.monotonic() - connected_at >= self.stable_after:
                attempt = 0
            delay = 0.0 if code == SERVICE_RESTART else self.backoff.delay(attempt)
            attempt += 1
            self.stats.reconnects += 1
            last_error = self._error_frame()
            if last_error:
                reason = f"{last_error.get('code')}: {last_error.get('message')}"
            yield Reconnecting(attempt=attempt, delay=delay, code=code, reason=reason)
            if delay:
                await asyncio.sleep(delay)

    # Read through methods: the loop in `events` narrows the attributes, but close() and
    # the frame handlers change them while it awaits.
    def _closed_by_caller(self) -> bool:
        return self._closing

    def _error_frame(self) -> dict[str, Any] | None:
        return self._last_error

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    async def _welcome(self, ws: Any) -> dict[str, Any]:
        """The first frame: ``welcome``, or an ``error`` (e.g. quota) before the close."""
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), self.open_timeout + 10))
            if frame.get("type") == "welcome":
                welcome: dict[str, Any] = frame
                return welcome
            if frame.get("type") == "error":
                self._last_error = frame

    async def _subscribe_all(self) -> None:
        """Resume the channels we have a position in; subscribe the rest."""
        positions = self.sequencer.positions()
        resume: dict[str, int] = {}
        if self.resume_supported is not False:
            resume = {c: positions[c] for c in self.channels if c in positions}
        fresh = [c for c in self.channels if c not in resume]
        for channel in fresh:
            if channel in positions:  # held a position but cannot resume: report what is lost
                self.sequencer.rebase(channel, reason="resume_not_supported")
        self._resuming = set(resume)
        if resume:
            message: dict[str, Any] = {"op": "resume", "channels": resume}
            if self.conflate_ms is not None:
                message["conflate_ms"] = self.conflate_ms
            await self._send(message)
        if fresh:
            await self._send({"op": "subscribe", "channels": fresh, **self._subscribe_options()})

    async def _pinger(self, ws: Any) -> None:
        ping_id = 0
        while True:
            await asyncio.sleep(self.ping_interval)
            ping_id += 1
            self._pings = {ping_id: time.monotonic()}
            try:
                await ws.send(json.dumps({"op": "ping", "id": ping_id}))
            except ConnectionClosed:
                return

    # --- frames -------------------------------------------------------------------------
    async def _handle(self, frame: dict[str, Any]) -> list[Event]:
        kind = frame.get("type")
        if kind == "update":
            return await self._update(frame)
        if kind == "snapshot":
            return [self._snapshot(frame)]
        if kind == "lagged":
            return self._lagged(frame)
        if kind == "error":
            return await self._error(frame)
        if kind == "subscribed":
            return [Subscribed(channels=list(frame.get("channels") or []), raw=frame)]
        if kind == "unsubscribed":
            return [Unsubscribed(channels=list(frame.get("channels") or []))]
        if kind == "pong":
            ping_id = frame.get("id")
            sent = self._pings.pop(ping_id, None) if isinstance(ping_id, int) else None
            if sent is not None:
                self.stats.rtt = time.monotonic() - sent
            return [Pong(id=frame.get("id"), rtt=self.stats.rtt)] if self.heartbeats else []
        if kind == "heartbeat":
            return [Heartbeat(ts=frame.get("ts", 0))] if self.heartbeats else []
        return [Other(type=str(kind), raw=frame)]

    async def _update(self, frame: dict[str, Any]) -> list[Event]:
        channel, seq, data = frame["channel"], int(frame["seq"]), frame.get("data")
        from_seq = int(frame.get("from_seq", seq))
        if channel not in self.channels:
            return []  # in flight when we unsubscribed
        verdict, expected, reason = self.sequencer.update(channel, seq, data, from_seq=from_seq)
        if verdict is Verdict.DUPLICATE:
            self.stats.duplicates_dropped += 1
            return []
        events: list[Event] = []
        if verdict in (Verdict.GAP, Verdict.RESET):
            self.stats.gaps += 1
            events.append(
                Gap(
                    channel=channel,
                    expected_seq=expected or from_seq,
                    received_seq=from_seq,
                    reason=reason,
                )
            )
            if _is_book(channel) and isinstance(data, dict) and "checksum" in data:
                await self._resnapshot(channel)
        book = None
        if _is_book(channel) and isinstance(data, dict):
            book, mismatch = self._book_update(channel, seq, data)
            if mismatch is not None:
                events.append(mismatch)
                await self._resnapshot(channel)
        events.append(Update(channel=channel, seq=seq, data=data, book=book, from_seq=from_seq))
        return events

    def _snapshot(self, frame: dict[str, Any]) -> Snapshot:
        channel, seq, data = frame["channel"], int(frame["seq"]), frame.get("data")
        self.sequencer.snapshot(channel, seq)
        book = None
        if _is_book(channel) and isinstance(data, dict):
            book = self.books.setdefault(channel, OrderBook(channel))
            book.replace(data, seq)
            self._stale_books.discard(channel)
        return Snapshot(channel=channel, seq=seq, data=data, book=book)

    def _lagged(self, frame: dict[str, Any]) -> list[Event]:
        channel = frame["channel"]
        self.sequencer.lagged(channel, int(frame["to_seq"]))
        self.stats.lagged += 1
        if _is_book(channel):
            self._stale_books.add(channel)  # a snapshot follows at once
        return [
            Lagged(
                channel=channel,
                missed=int(frame.get("missed", 0)),
                from_seq=int(frame["from_seq"]),
                to_seq=int(frame["to_seq"]),
            )
        ]

    async def _error(self, frame: dict[str, Any]) -> list[Event]:
        code = frame.get("code", "")
        details = frame.get("details") or {}
        if code == "resume_unavailable":
            channel = details.get("channel")
            if channel:
                last = self.sequencer.last_seq(channel)
                self.sequencer.rebase(channel)  # reported here; the next message is the base
                self._resuming.discard(channel)
                if _is_book(channel):
                    self._stale_books.add(channel)
                return [
                    ResumeUnavailable(
                        channel=channel,
                        last_seq=last,
                        oldest_seq=details.get("oldest_seq"),
                        message=frame.get("message", ""),
                    )
                ]
        if code == "invalid" and details.get("op") == "resume" and self._resuming:
            # A server without the resume op: subscribe afresh and report what was lost.
            self.resume_supported = False
            channels = [c for c in self.channels if c in self._resuming]
            self._resuming.clear()
            for channel in channels:
                self.sequencer.rebase(channel, reason="resume_not_supported")
            if channels:
                await self._send(
                    {"op": "subscribe", "channels": channels, **self._subscribe_options()}
                )
            return []
        self._last_error = frame
        return [
            StreamErrorFrame(code=code, message=frame.get("message", ""), details=dict(details))
        ]

    # --- books --------------------------------------------------------------------------
    def _book_update(
        self, channel: str, seq: int, data: dict[str, Any]
    ) -> tuple[OrderBook | None, ChecksumMismatch | None]:
        book = self.books.setdefault(channel, OrderBook(channel))
        if "checksum" not in data:  # today's full-state updates
            book.replace(data, seq)
            self._stale_books.discard(channel)
            return book, None
        if channel in self._stale_books or book.seq is None:
            return None, None
        book.apply(data, seq)
        computed = self.checksum(book)
        expected = int(data["checksum"])
        if computed != expected:
            self.stats.checksum_mismatches += 1
            self._stale_books.add(channel)
            return None, ChecksumMismatch(
                channel=channel, seq=seq, expected=expected, computed=computed
            )
        return book, None

    async def _resnapshot(self, channel: str) -> None:
        """A delta book we cannot trust: subscribe again for a fresh snapshot."""
        self._stale_books.add(channel)
        if self._ws is not None:
            await self._send({"op": "unsubscribe", "channels": [channel]})
            await self._send(
                {"op": "subscribe", "channels": [channel], **self._subscribe_options()}
            )


def _is_book(channel: str) -> bool:
    return channel.startswith("book.")
