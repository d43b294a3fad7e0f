"""Client-to-server messages: parse and validate, never trust.

A message that fails here is answered with an ``invalid`` error frame and the
connection stays open (API.md); only abuse of the message rate closes it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from marketdata.feeds.groups import KINDS

MAX_MESSAGE_BYTES = 16 * 1024
MAX_CHANNELS_PER_MESSAGE = 200
MAX_PING_ID_LENGTH = 64
# Public channel syntax: kind.exchange.BASE-QUOTE (API.md). Parsed before any lookup, so
# arbitrary client text never reaches the channel layer or a group name.
_CHANNEL = re.compile(r"^([a-z0-9_]{1,20})\.([a-z0-9_]{1,40})\.([A-Z0-9]{1,30}-[A-Z0-9]{1,30})$")
STATEFUL_KINDS = frozenset({"book", "ticker", "candles_1m"})  # subscriptions start with a snapshot
ANALYTICS_KINDS = frozenset({"ofi", "vpin"})  # plans with analytics only
OPS = ("auth", "subscribe", "unsubscribe", "ping")


class ProtocolError(Exception):
    """The client's message is malformed; the text is safe to send back."""

    def __init__(self, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


@dataclass(frozen=True)
class ClientMessage:
    op: str
    key: str | None = None
    channels: list[str] = field(default_factory=list)
    ping_id: Any = None


def message_parse(*, text: str | None, data: bytes | None) -> ClientMessage:
    raw = text.encode() if text is not None else data
    if raw is None:
        raise ProtocolError("Empty message.")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            "Message too large.", {"max_bytes": MAX_MESSAGE_BYTES, "bytes": len(raw)}
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError("Messages must be JSON objects.") from None
    if not isinstance(body, dict):
        raise ProtocolError("Messages must be JSON objects.")
    op = body.get("op")
    if op not in OPS:
        raise ProtocolError("Unknown op.", {"op": str(op)[:40], "allowed": list(OPS)})
    if op == "auth":
        key = body.get("key")
        if not isinstance(key, str) or not key:
            raise ProtocolError("auth needs a key.", {"field": "key"})
        return ClientMessage(op=op, key=key)
    if op == "ping":
        ping_id = body.get("id")
        if not (ping_id is None or isinstance(ping_id, int | float | str)) or (
            isinstance(ping_id, str) and len(ping_id) > MAX_PING_ID_LENGTH
        ):
            raise ProtocolError("ping id must be a number or a short string.", {"field": "id"})
        return ClientMessage(op=op, ping_id=ping_id)
    channels = body.get("channels")
    if (
        not isinstance(channels, list)
        or not channels
        or not all(isinstance(c, str) for c in channels)
    ):
        raise ProtocolError("channels must be a non-empty list of strings.", {"field": "channels"})
    if len(channels) > MAX_CHANNELS_PER_MESSAGE:
        raise ProtocolError(
            "Too many channels in one message.", {"max_channels": MAX_CHANNELS_PER_MESSAGE}
        )
    return ClientMessage(op=op, channels=list(dict.fromkeys(channels)))


def channel_kind(channel: str) -> str:
    return channel.partition(".")[0]


def channels_unknown(channels: list[str], *, instruments: set[tuple[str, str]]) -> list[str]:
    """The channels that name no kind we publish or no active instrument."""
    unknown = []
    for channel in channels:
        match = _CHANNEL.match(channel)
        if match is None or match[1] not in KINDS or (match[2], match[3]) not in instruments:
            unknown.append(channel)
    return unknown


class InstrumentCatalog:
    """Active (exchange, PUBLIC-SYMBOL) pairs, re-read from the database every minute."""

    TTL_SECONDS = 60.0

    def __init__(self) -> None:
        self._pairs: set[tuple[str, str]] = set()
        self._loaded_at = float("-inf")

    def stale(self) -> bool:
        return time.monotonic() - self._loaded_at > self.TTL_SECONDS

    def load(self) -> set[tuple[str, str]]:
        """Sync (database); the hub calls it through a thread when stale."""
        from marketdata.models import Instrument

        rows = Instrument.objects.filter(active=True, exchange__enabled=True).values_list(
            "exchange_id", "symbol"
        )
        self._pairs = {(exchange, symbol.upper()) for exchange, symbol in rows}
        self._loaded_at = time.monotonic()
        return self._pairs

    @property
    def pairs(self) -> set[tuple[str, str]]:
        return self._pairs

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")
