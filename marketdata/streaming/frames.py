"""Server-to-client frames (API.md). Every frame is a JSON text frame built here.

Market-data frames are serialised once per published message and the same string
is handed to every local subscriber; only per-client frames (welcome, errors,
pong) are serialised per connection.
"""

from __future__ import annotations

from typing import Any

import orjson


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def welcome(*, plan: str, connections: int, subscriptions: int, delay_seconds: int) -> str:
    limits = {
        "connections": connections,
        "subscriptions": subscriptions,
        "delay_seconds": delay_seconds,
    }
    return dumps({"type": "welcome", "plan": plan, "limits": limits})


def subscribed(channels: list[str]) -> str:
    return dumps({"type": "subscribed", "channels": channels})


def unsubscribed(channels: list[str]) -> str:
    return dumps({"type": "unsubscribed", "channels": channels})


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


def error(*, code: str, message: str, details: dict | None = None) -> str:
    return dumps({"type": "error", "code": code, "message": message, "details": details or {}})
