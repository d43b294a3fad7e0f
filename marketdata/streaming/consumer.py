"""``/ws/v1/stream``: authenticate, enforce the plan, hand subscriptions to the hub.

Thin by design: parsing lives in ``protocol``, limits in ``quotas``, fan-out in
``hub``, the periodic re-check of open connections in ``recheck``. The consumer
holds no channel-layer channel of its own (``channel_layer_alias`` names no
layer): the process's hub is the only channel-layer client, which is what keeps
500 clients cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from marketdata.streaming import frames
from marketdata.streaming.access import (
    CLOSE_NOT_AUTHENTICATED,
    CLOSE_PLAN,
    ApiKeyError,
    ScopeMissing,
    StreamPrincipal,
    handshake_key,
    principal_from_key,
    principal_from_session,
)
from marketdata.streaming.books import BOOK_DEPTH, depth_default, is_book_channel
from marketdata.streaming.connection import Connection, close_send
from marketdata.streaming.history import ReplayRefused, replay_plan, replay_run
from marketdata.streaming.hub import CLOSE_RESTART, Hub, hub_get
from marketdata.streaming.metrics import STREAM_REFUSALS
from marketdata.streaming.protocol import (
    ANALYTICS_KINDS,
    ClientMessage,
    ProtocolError,
    Replay,
    channel_kind,
    channels_unknown,
    message_parse,
)
from marketdata.streaming.quotas import CLOSE_QUOTA, QuotaUnavailable, TokenBucket
from marketdata.streaming.recheck import connections_recheck
from quantsaas.db import in_db_thread

logger = logging.getLogger(__name__)

AUTH_TIMEOUT_SECONDS = 10.0
CLOSE_RATE = 4029
CLOSE_TRY_LATER = 1013
MESSAGE_RATE = 10.0  # client messages per second, sustained
MESSAGE_BURST = 50.0
ECHO_CHANNELS = 50  # channel lists echoed back are cut to this many


class StreamConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels: no type hints
    channel_layer_alias = "stream-consumers-use-the-hub"  # no per-connection layer channel

    async def connect(self) -> None:
        self.hub: Hub = hub_get()
        self.hub._recheck = connections_recheck
        self.conn: Connection | None = None
        self.principal: StreamPrincipal | None = None
        self.bucket = TokenBucket(rate=MESSAGE_RATE, burst=MESSAGE_BURST)
        self.auth_deadline: asyncio.Task[None] | None = None
        self.replaying: asyncio.Task[int] | None = None
        self.ending = False
        # Browsers authenticate with the session cookie; AllowedHostsOriginValidator (asgi.py)
        # refuses other sites' pages, so a cookie cannot be ridden cross-site.
        await self.accept()
        raw_key = handshake_key(self.scope)
        if raw_key is not None:
            await self._authenticate_key(raw_key)
            return
        session = self.scope.get("session")
        organization_id = session.get("organization_id") if session is not None else None
        principal = await database_sync_to_async(principal_from_session)(
            user=self.scope.get("user"),
            organization_id=organization_id,
            session_key=session.session_key if session is not None else None,
        )
        if principal is not None:
            await self._start(principal)
        else:
            self.auth_deadline = asyncio.ensure_future(self._close_unauthenticated())

    async def _close_unauthenticated(self) -> None:
        await asyncio.sleep(AUTH_TIMEOUT_SECONDS)
        if self.conn is None:
            await self._refuse(CLOSE_NOT_AUTHENTICATED, "not_authenticated", "Authenticate first.")

    async def _authenticate_key(self, raw_key: str) -> None:
        try:
            principal = await database_sync_to_async(principal_from_key)(raw_key=raw_key)
        except ApiKeyError as exc:
            await self._refuse(CLOSE_NOT_AUTHENTICATED, "authentication_failed", str(exc))
            return
        except ScopeMissing as exc:
            await self._refuse(CLOSE_PLAN, "permission_denied", str(exc), required_scope="read")
            return
        await self._start(principal)

    async def _refuse(self, code: int, error_code: str, message: str, **details: Any) -> None:
        """Say why, then close: the close goes out even if the error frame could not."""
        self.ending = True
        STREAM_REFUSALS.labels(str(code)).inc()
        with contextlib.suppress(Exception):
            await self.send(frames.error(code=error_code, message=message, details=details))
        if close_send(self.base_send, code=code, reason=message):
            return  # 1012 and 1013 go straight to autobahn (connection.close_frame_send)
        with contextlib.suppress(Exception):
            await self.close(code=code, reason=message[:120])

    async def _start(self, principal: StreamPrincipal) -> None:
        if self.auth_deadline is not None:
            self.auth_deadline.cancel()
        plan = principal.entitlements
        if self.hub.draining:  # this process is stopping: the client goes to another at once
            await self._refuse(CLOSE_RESTART, "unavailable", "Server restarting; reconnect.")
            return
        try:
            slot = await self.hub.slots.acquire(
                organization_id=principal.organization_id,
                connection_id=uuid.uuid4().hex,
                limit=plan.ws_connections,
            )
        except QuotaUnavailable:
            logger.warning("stream: quota store unavailable, refusing connection")
            await self._refuse(CLOSE_TRY_LATER, "unavailable", "Try again shortly.")
            return
        if not slot.acquired:
            await self._refuse(
                CLOSE_QUOTA,
                "quota_exceeded",
                f"Your plan allows {plan.ws_connections} concurrent connections.",
                limit=plan.ws_connections,
            )
            return
        self.principal = principal
        conn = Connection(
            connection_id=slot.member,  # its slot's name: admission order across processes
            organization_id=principal.organization_id,
            delay_seconds=plan.stream_delay_seconds,
            send=self.base_send,
            close=self._close_from_hub,
            snapshot_for=self.hub.snapshot_for,
        )
        conn.api_key_id, conn.user_id = principal.api_key_id, principal.user_id
        conn.session_key = principal.session_key
        # The re-check keeps these to the current plan (recheck.py).
        conn.plan_connections = plan.ws_connections
        conn.plan_subscriptions = plan.ws_subscriptions
        conn.analytics_allowed = plan.analytics
        conn.plan_book_depth = plan.book_depth
        conn.conflate_floor_ms = plan.stream_conflate_floor_ms
        self.conn = conn
        self.hub.connection_add(conn)
        conn.push(
            frames.welcome(
                plan=plan.plan,
                connections=plan.ws_connections,
                subscriptions=plan.ws_subscriptions,
                delay_seconds=plan.stream_delay_seconds,
                resume_seconds=settings.STREAM_REPLAY_SECONDS,
                conflate_ms=plan.stream_conflate_floor_ms,
                book_depth=plan.book_depth,
            )
        )

    async def _close_from_hub(self, code: int, reason: str) -> None:
        self.ending = True
        await self.close(code=code, reason=reason[:120])

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.ending:
            return
        # Abuse protection before any parsing: the budget is per connection, in process.
        if not self.bucket.take():
            if self.conn is not None:
                await self.conn.close(CLOSE_RATE, "Message rate exceeded.")
            else:
                await self._refuse(CLOSE_RATE, "rate_limited", "Message rate exceeded.")
            return
        try:
            message = message_parse(text=text_data, data=bytes_data)
        except ProtocolError as exc:
            await self._reply(frames.error(code="invalid", message=str(exc), details=exc.details))
            return
        if self.conn is None:
            if message.op == "auth":
                await self._authenticate_key(message.key or "")
            else:
                await self.send(
                    frames.error(code="not_authenticated", message="Authenticate first.")
                )
            return
        await self._handle(self.conn, message)

    async def _reply(self, frame: str) -> None:
        if self.conn is not None:
            self.conn.push(frame)  # in order with the data frames already queued
        else:
            await self.send(frame)

    async def _handle(self, conn: Connection, message: ClientMessage) -> None:
        if message.op == "ping":
            conn.push(frames.pong(ping_id=message.ping_id))
        elif message.op == "auth":
            conn.push(frames.error(code="invalid", message="Already authenticated."))
        elif message.op in ("subscribe", "resume"):
            await self._subscribe(conn, message)
        elif message.op == "unsubscribe":
            held = [c for c in message.channels if self._internal(conn, c) in conn.channels]
            conn.push(frames.unsubscribed(held[:ECHO_CHANNELS], count=len(held)))
            await self.hub.unsubscribe(conn, [self._internal(conn, c) for c in held])
        elif message.op == "replay":
            await self._replay(conn, message.replay)

    async def _subscribe(self, conn: Connection, message: ClientMessage) -> None:
        channels = message.channels
        limit = conn.plan_subscriptions  # the current plan's, not the one at connect
        unknown = channels_unknown(channels, instruments=await self.hub.instruments())
        if unknown:
            conn.push(
                frames.error(
                    code="unknown_channel",
                    message="Unknown channels; nothing was subscribed.",
                    details={"channels": unknown},
                )
            )
            return
        analytics = [c for c in channels if channel_kind(c) in ANALYTICS_KINDS]
        if analytics and not conn.analytics_allowed:
            await conn.close(
                CLOSE_PLAN,
                "Plan does not include analytics.",
                farewell=frames.error(
                    code="plan_required",
                    message="Your plan does not include analytics channels.",
                    details={"channels": analytics},
                ),
            )
            return
        books_asked = [c for c in channels if is_book_channel(c)]
        if books_asked and message.depth is not None and message.depth > conn.plan_book_depth:
            # Refused, not cut short: a client must never take a 10-level book for the
            # 50 levels it asked for. The connection stays open.
            allowed = conn.plan_book_depth
            conn.push(
                frames.error(
                    code="plan_required",
                    message=f"Your plan includes order books {allowed} levels deep; "
                    f"depth {message.depth} was asked. Nothing was subscribed.",
                    details={"limit": allowed, "depth": message.depth, "channels": books_asked},
                )
            )
            return
        new = [
            self._internal(conn, c)
            for c in channels
            if self._internal(conn, c) not in conn.channels
        ]
        resumed = {self._internal(conn, c): seq for c, seq in message.since.items()}
        resumed = {c: seq for c, seq in resumed.items() if c in new}
        if len(conn.channels) + len(new) > limit:
            conn.push(
                frames.error(
                    code="quota_exceeded",
                    message=f"Your plan allows {limit} subscriptions "
                    "per connection; nothing was subscribed.",
                    details={"limit": limit, "subscribed": len(conn.channels)},
                )
            )
            return
        # The plan's floor raises a lower request (or none): a subscription gets at most
        # one frame per channel every `floor` ms, and `subscribed` says so.
        floor = conn.conflate_floor_ms
        conflate_ms = max(message.conflate_ms or 0, floor)
        if message.conflate_ms is not None:
            targets = [self._internal(conn, c) for c in channels]
        else:  # no value asked: held channels keep theirs, new ones get the floor
            targets = new if floor else []
        for channel in targets:
            if conflate_ms:
                conn.conflate[channel] = conflate_ms
            else:
                conn.conflate.pop(channel, None)
        depth = message.depth or depth_default(conn.plan_book_depth)
        books = [c for c in new if is_book_channel(c)]
        for channel in books:  # a held book's view is kept: a new depth needs a resubscribe
            if depth < BOOK_DEPTH:
                conn.depths[channel] = depth
            else:
                conn.depths.pop(channel, None)
        conn.push(
            frames.subscribed(
                channels[:ECHO_CHANNELS],
                count=len(channels),
                conflate_ms=conflate_ms,
            )
        )
        await self.hub.subscribe(conn, new, since=resumed)

    @staticmethod
    def _internal(conn: Connection, channel: str) -> str:
        """`alerts` is this organization's own alerts stream (events.public_name)."""
        return f"alerts.{conn.organization_id}" if channel == "alerts" else channel

    async def _replay(self, conn: Connection, replay: Replay | None) -> None:
        principal = self.principal
        if replay is None or principal is None:
            return
        if self.replaying is not None and not self.replaying.done():
            conn.push(frames.error(code="invalid", message="A replay is already running."))
            return
        if conn.delay:
            conn.push(
                frames.error(
                    code="plan_required",
                    message="Replay comes with real-time plans.",
                    details={"channel": replay.channel},
                )
            )
            return
        try:
            plan = await in_db_thread(replay_plan)(
                replay=replay, organization_id=conn.organization_id, delay_seconds=conn.delay
            )
        except ReplayRefused as exc:
            conn.push(frames.error(code=exc.code, message=str(exc), details=exc.details))
            return
        self.replaying = asyncio.ensure_future(replay_run(conn=conn, replay=replay, plan=plan))

    async def disconnect(self, code: int) -> None:
        self.ending = True
        if self.auth_deadline is not None:
            self.auth_deadline.cancel()
        if self.replaying is not None:
            self.replaying.cancel()
        if self.conn is not None:
            await self.hub.connection_remove(self.conn)
