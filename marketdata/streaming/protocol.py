"""Client-to-server messages: parse and validate, never trust.

A message that fails here is answered with an ``invalid`` error frame and the
connection stays open (docs/api.md); only abuse of the message rate closes it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import orjson

from marketdata.consolidated import CONSOLIDATED, CONSOLIDATED_KINDS, consolidated_pairs
from marketdata.feeds.groups import KINDS
from marketdata.streaming.books import DEFAULT_DEPTH, STREAM_DEPTHS

MAX_MESSAGE_BYTES = 16 * 1024
MAX_CHANNELS_PER_MESSAGE = 200
MAX_PING_ID_LENGTH = 64
# Public channel syntax: kind.exchange.BASE-QUOTE (docs/api.md). Parsed before any lookup, so
# arbitrary client text never reaches the channel layer or a group name.
_CHANNEL = re.compile(r"^([a-z0-9_]{1,20})\.([a-z0-9_]{1,40})\.([A-Z0-9]{1,30}-[A-Z0-9]{1,30})$")
_STATUS_CHANNEL = re.compile(r"^status\.([a-z0-9_]{1,40})$")  # feed health of one exchange
# Subscriptions to these start with a snapshot (the latest state).
STATEFUL_KINDS = frozenset({"book", "ticker", "candles_1m", "status", "bbo"})
ANALYTICS_KINDS = frozenset({"ofi", "vpin"})  # plans with analytics only
REPLAY_KINDS = frozenset({"trades", "candles_1m"})  # what is stored, so what can be replayed
OPS = ("auth", "subscribe", "unsubscribe", "ping", "resume", "replay")
MAX_CONFLATE_MS = 60_000
MAX_SEQ = 2**53 - 1  # what every JSON client can hold exactly
MAX_REPLAY_SPEED = 1000


class ProtocolError(Exception):
    """The client's message is malformed; the text is safe to send back."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


@dataclass(frozen=True)
class ClientMessage:
    op: str
    key: str | None = None
    channels: list[str] = field(default_factory=list)
    ping_id: Any = None
    conflate_ms: int | None = None  # subscribe / resume: None keeps the default (0)
    since: dict[str, int] = field(default_factory=dict)  # resume (or subscribe's since_seq)
    depth: int | None = None  # subscribe / resume: the book view (None: DEFAULT_DEPTH)
    replay: Replay | None = None


@dataclass(frozen=True)
class Replay:
    channel: str
    start_ms: int
    end_ms: int
    speed: float  # 0: as fast as the connection takes it


# A client message: whatever JSON object it sent, checked field by field below.
Body = dict[str, Any]


@overload
def _integer(body: Body, name: str, *, low: int, high: int, required: Literal[True]) -> int: ...


@overload
def _integer(
    body: Body, name: str, *, low: int, high: int, required: Literal[False] = False
) -> int | None: ...


def _integer(body: Body, name: str, *, low: int, high: int, required: bool = False) -> int | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError(f"{name} must be an integer from {low} to {high}.", {"field": name})
    return value


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
    if op == "replay":
        return ClientMessage(op=op, replay=_replay(body))
    conflate_ms = _integer(body, "conflate_ms", low=0, high=MAX_CONFLATE_MS)
    depth = body.get("depth")
    if depth is not None and (type(depth) is not int or depth not in STREAM_DEPTHS):
        raise ProtocolError(
            f"depth must be one of {', '.join(map(str, STREAM_DEPTHS))} (default {DEFAULT_DEPTH}).",
            {"field": "depth", "allowed": list(STREAM_DEPTHS)},
        )
    if op == "resume":
        since = body.get("channels")
        if not isinstance(since, dict) or not since:
            raise ProtocolError(
                "resume needs channels: an object of channel -> last seq.", {"field": "channels"}
            )
        if len(since) > MAX_CHANNELS_PER_MESSAGE:
            raise ProtocolError(
                "Too many channels in one message.", {"max_channels": MAX_CHANNELS_PER_MESSAGE}
            )
        for seq in since.values():
            if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
                raise ProtocolError(
                    "Each seq must be a non-negative integer.", {"field": "channels"}
                )
        return ClientMessage(
            op=op, channels=list(since), since=dict(since), conflate_ms=conflate_ms, depth=depth
        )
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
    channels = list(dict.fromkeys(channels))
    since_seq = _integer(body, "since_seq", low=0, high=MAX_SEQ) if op == "subscribe" else None
    since = {} if since_seq is None else dict.fromkeys(channels, since_seq)
    return ClientMessage(
        op=op, channels=channels, conflate_ms=conflate_ms, since=since, depth=depth
    )


def _replay(body: Body) -> Replay:
    channel = body.get("channel")
    if not isinstance(channel, str) or channel_kind(channel) not in REPLAY_KINDS:
        raise ProtocolError(
            "replay needs a channel of a stored kind.",
            {"field": "channel", "kinds": sorted(REPLAY_KINDS)},
        )
    start = _integer(body, "from", low=0, high=MAX_SEQ, required=True)
    end = _integer(body, "to", low=0, high=MAX_SEQ, required=True)
    if end <= start:
        raise ProtocolError("to must be after from.", {"field": "to"})
    speed = body.get("speed", 0)
    if (
        isinstance(speed, bool)
        or not isinstance(speed, int | float)
        or not (0 <= speed <= MAX_REPLAY_SPEED)
    ):
        raise ProtocolError(
            f"speed must be a number from 0 (as fast as possible) to {MAX_REPLAY_SPEED}.",
            {"field": "speed"},
        )
    return Replay(channel=channel, start_ms=start, end_ms=end, speed=float(speed))


def channel_kind(channel: str) -> str:
    return channel.partition(".")[0]


def channels_unknown(channels: list[str], *, instruments: set[tuple[str, str]]) -> list[str]:
    """The channels that name no kind we publish or no active instrument."""
    unknown = []
    exchanges = {exchange for exchange, _ in instruments}
    pairs = None
    for channel in channels:
        if channel == "alerts":  # the organization's own alert firings
            continue
        status = _STATUS_CHANNEL.match(channel)
        if status is not None:
            if status[1] not in exchanges:
                unknown.append(channel)
            continue
        match = _CHANNEL.match(channel)
        if match is not None and match[2] == CONSOLIDATED:
            if pairs is None:
                pairs = consolidated_pairs(instruments)
            if match[1] not in CONSOLIDATED_KINDS or match[3] not in pairs:
                unknown.append(channel)
        elif match is None or match[1] not in KINDS or (match[2], match[3]) not in instruments:
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
