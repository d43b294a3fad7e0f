"""Server-to-client frames (docs/api.md). Every frame is a JSON text frame built here.

Market-data frames are serialised once per published message and the same string
is handed to every local subscriber; only per-client frames (welcome, errors,
pong) are serialised per connection.
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

TEXT_FIN = 0x81  # FIN + opcode 1 (text): every frame we send is one whole text message


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def dumps_bytes(obj: Any) -> bytes:
    return orjson.dumps(obj)


def wire(payload: bytes) -> bytes:
    """The complete server-to-client WebSocket frame (RFC 6455 5.2) for a UTF-8 payload.

    Server frames are never masked and we negotiate no extension, so these bytes
    are the same for every client: built once per message, written to each.
    """
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", TEXT_FIN, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", TEXT_FIN, 126, size)
    else:
        header = struct.pack("!BBQ", TEXT_FIN, 127, size)
    return header + payload


def welcome(
    *,
    plan: str,
    connections: int,
    subscriptions: int,
    delay_seconds: int,
    resume_seconds: int = 0,
    conflate_ms: int = 0,
    book_depth: int = 50,
) -> str:
    """`conflate_ms` is the plan's floor, the least a subscription gets (0: every update
    as it comes); `book_depth` the most levels a `book` subscription may ask for;
    `resume_seconds` how far back `resume` can reach."""
    limits = {
        "connections": connections,
        "subscriptions": subscriptions,
        "delay_seconds": delay_seconds,
        "conflate_ms": conflate_ms,
        "book_depth": book_depth,
        "resume_seconds": resume_seconds,
    }
    return dumps({"type": "welcome", "plan": plan, "limits": limits})


def subscribed(channels: list[str], *, count: int | None = None, conflate_ms: int = 0) -> str:
    """`channels` may be cut short (a long list echoed costs the client's queue);
    `count` then says how many there were."""
    body: dict[str, Any] = {"type": "subscribed", "channels": channels, "conflate_ms": conflate_ms}
    if count is not None and count > len(channels):
        body["count"] = count
    return dumps(body)


def unsubscribed(channels: list[str], *, count: int | None = None) -> str:
    body: dict[str, Any] = {"type": "unsubscribed", "channels": channels}
    if count is not None and count > len(channels):
        body["count"] = count
    return dumps(body)


def update(*, channel: str, seq: int, data: Any) -> str:
    return dumps({"type": "update", "channel": channel, "seq": seq, "data": data})


def snapshot(*, channel: str, seq: int, data: Any) -> str:
    return dumps({"type": "snapshot", "channel": channel, "seq": seq, "data": data})


def lagged(*, channel: str, missed: int, from_seq: int, to_seq: int) -> str:
    """`missed` counts records (trades, candles...) in the skipped messages from_seq..to_seq."""
    return dumps(
        {
            "type": "lagged",
            "channel": channel,
            "missed": missed,
            "from_seq": from_seq,
            "to_seq": to_seq,
        }
    )


def heartbeat(*, ts: int) -> str:
    return dumps({"type": "heartbeat", "ts": ts})


def pong(*, ping_id: Any) -> str:
    return dumps({"type": "pong", "id": ping_id})


def error(*, code: str, message: str, details: dict[str, Any] | None = None) -> str:
    return dumps({"type": "error", "code": code, "message": message, "details": details or {}})
