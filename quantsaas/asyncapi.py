"""The AsyncAPI 3.0 document of `/ws/v1/stream`: the stream's contract, as machine-readable
as the OpenAPI schema is for REST.

Served at /api/v1/asyncapi.json beside /api/v1/schema/ and rendered on the API docs page.
It is written out here rather than generated: the stream's frames are built in
marketdata/streaming/frames.py and documented in docs/streaming.md, and a test checks that
every message type those frames send is described here (tests/web/test_asyncapi.py).
The server entry is filled from the request, so the address shown is the one in use.
"""

from __future__ import annotations

from typing import Any

STREAM_PATH = "/ws/v1/stream"
CHANNEL_PATTERN = r"^(trades|book|ticker|candles_1m|ofi|vpin|bbo)\.[a-z0-9_]+\.[A-Z0-9]+-[A-Z0-9]+$"


def _object(
    properties: dict[str, Any], required: list[str], description: str = ""
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if description:
        schema["description"] = description
    return schema


_MS = {"type": "integer", "description": "Milliseconds since the Unix epoch, UTC."}
_CHANNEL = {"type": "string", "pattern": CHANNEL_PATTERN, "examples": ["trades.sim.BTC-USD"]}
_CHANNELS = {"type": "array", "items": _CHANNEL, "maxItems": 50}
_SEQ = {"type": "integer", "description": "Numbers the messages of one channel; +1 each time."}
_LEVELS = {
    "type": "array",
    "items": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}]},
    "description": "[price, size] levels, best first.",
}

SCHEMAS: dict[str, Any] = {
    "Trade": _object(
        {
            "id": {"type": "string"},
            "ts": _MS,
            "price": {"type": "number"},
            "size": {"type": "number"},
            "side": {"type": "string", "enum": ["buy", "sell"]},
            "recv_ts": _MS,
        },
        ["id", "ts", "price", "size", "side"],
    ),
    "Book": _object(
        {
            "bids": _LEVELS,
            "asks": _LEVELS,
            "checksum": {
                "type": "integer",
                "description": "CRC32 of the best 10 bids then asks, "
                "`bid_price:bid_size:...:ask_price:ask_size` (docs: Books).",
            },
            "ts": _MS,
            "exchange_ts": {**_MS, "type": ["integer", "null"]},
            "recv_ts": _MS,
        },
        ["bids", "asks", "ts", "checksum"],
        "A snapshot: the whole book to the subscription's depth. An update: only the "
        "levels that changed, size 0 = gone. book.consolidated.<PAIR> levels are "
        "[price, total_size, {venue: size}] and the frame lists its `venues`.",
    ),
    "Bbo": _object(
        {
            "bid": {"type": ["number", "null"]},
            "bid_size": {"type": ["number", "null"]},
            "bid_venue": {"type": ["string", "null"]},
            "ask": {"type": ["number", "null"]},
            "ask_size": {"type": ["number", "null"]},
            "ask_venue": {"type": ["string", "null"]},
            "venues": {"type": "array", "items": {"type": "string"}},
            "ts": _MS,
        },
        ["bid", "ask", "venues", "ts"],
        "bbo.consolidated.<PAIR>: the best bid and ask across venues, each with its venue.",
    ),
    "Ticker": _object(
        {
            "ts": _MS,
            "last": {"type": "number"},
            "bid": {"type": ["number", "null"]},
            "ask": {"type": ["number", "null"]},
            "recv_ts": _MS,
        },
        ["ts", "last"],
    ),
    "Candle": _object(
        {
            "ts": {**_MS, "description": "Start of the minute."},
            "open": {"type": "number"},
            "high": {"type": "number"},
            "low": {"type": "number"},
            "close": {"type": "number"},
            "volume": {"type": "number"},
            "is_final": {"type": "boolean", "description": "The minute has closed."},
        },
        ["ts", "open", "high", "low", "close", "volume"],
    ),
}


def _message(
    name: str, title: str, summary: str, payload: dict[str, Any], example: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "summary": summary,
        "contentType": "application/json",
        "payload": payload,
        "examples": [{"payload": example}],
    }


def _client(
    op: str,
    title: str,
    summary: str,
    fields: dict[str, Any],
    required: list[str],
    example: dict[str, Any],
) -> dict[str, Any]:
    payload = _object({"op": {"const": op}, **fields}, ["op", *required])
    return _message(op, title, summary, payload, example)


def _server(
    kind: str,
    title: str,
    summary: str,
    fields: dict[str, Any],
    required: list[str],
    example: dict[str, Any],
) -> dict[str, Any]:
    payload = _object({"type": {"const": kind}, **fields}, ["type", *required])
    return _message(kind, title, summary, payload, example)


CLIENT_MESSAGES = {
    "auth": _client(
        "auth",
        "Authenticate",
        "An API key as the first message, within 10 s, for clients that cannot set headers.",
        {"key": {"type": "string", "pattern": "^qs_"}},
        ["key"],
        {"op": "auth", "key": "qs_..."},
    ),
    "subscribe": _client(
        "subscribe",
        "Subscribe",
        "Channels `<kind>.<exchange>.<SYMBOL>`; at most the plan's subscriptions. "
        "`depth` (10, 20 default, 50) is the book view of `book` channels, at most the "
        "plan's `book_depth` (more: `plan_required`, nothing subscribed; none given: 20 or "
        "the plan's depth if less). `conflate_ms` (0 to 60000): at most one frame per "
        "channel every N ms, raised to the plan's floor (welcome's `conflate_ms`).",
        {
            "channels": _CHANNELS,
            "depth": {"type": "integer", "enum": [10, 20, 50]},
            "conflate_ms": {"type": "integer", "minimum": 0, "maximum": 60000},
        },
        ["channels"],
        {"op": "subscribe", "channels": ["trades.sim.BTC-USD", "book.sim.BTC-USD"]},
    ),
    "unsubscribe": _client(
        "unsubscribe",
        "Unsubscribe",
        "Stop receiving channels.",
        {"channels": _CHANNELS},
        ["channels"],
        {"op": "unsubscribe", "channels": ["book.sim.BTC-USD"]},
    ),
    "ping": _client(
        "ping",
        "Ping",
        "Check the path; answered by `pong` with the same id.",
        {"id": {}},
        [],
        {"op": "ping", "id": 7},
    ),
}

_DATA = {
    "oneOf": [
        {"$ref": "#/components/schemas/Book"},
        {"$ref": "#/components/schemas/Bbo"},
        {"$ref": "#/components/schemas/Ticker"},
        {"type": "array", "items": {"$ref": "#/components/schemas/Trade"}},
        {"type": "array", "items": {"$ref": "#/components/schemas/Candle"}},
        {"type": "array", "items": {"type": "object"}, "description": "ofi and vpin records"},
    ]
}

SERVER_MESSAGES = {
    "welcome": _server(
        "welcome",
        "Welcome",
        "After authentication: the plan and its limits (`delay_seconds` > 0: delayed data; "
        "`conflate_ms`: the plan's conflation floor; `book_depth`: the most levels a `book` "
        "subscription may ask for).",
        {
            "plan": {"type": "string"},
            "limits": _object(
                {
                    "connections": {"type": "integer"},
                    "subscriptions": {"type": "integer"},
                    "delay_seconds": {"type": "integer"},
                    "conflate_ms": {"type": "integer"},
                    "book_depth": {"type": "integer"},
                    "resume_seconds": {"type": "integer"},
                },
                ["connections", "subscriptions", "delay_seconds"],
            ),
        },
        ["plan", "limits"],
        {
            "type": "welcome",
            "plan": "pro",
            "limits": {
                "connections": 5,
                "subscriptions": 50,
                "delay_seconds": 0,
                "conflate_ms": 0,
                "book_depth": 50,
                "resume_seconds": 960,
            },
        },
    ),
    "subscribed": _server(
        "subscribed",
        "Subscribed",
        "The channels now subscribed; `conflate_ms` is the one in effect (the plan's floor "
        "raises a lower request).",
        {"channels": _CHANNELS, "conflate_ms": {"type": "integer"}},
        ["channels"],
        {"type": "subscribed", "channels": ["trades.sim.BTC-USD"]},
    ),
    "unsubscribed": _server(
        "unsubscribed",
        "Unsubscribed",
        "The channels no longer subscribed.",
        {"channels": _CHANNELS},
        ["channels"],
        {"type": "unsubscribed", "channels": ["book.sim.BTC-USD"]},
    ),
    "snapshot": _server(
        "snapshot",
        "Snapshot",
        "Full state of a stateful channel (book, ticker, candles_1m); resets `seq`.",
        {"channel": _CHANNEL, "seq": _SEQ, "data": _DATA},
        ["channel", "seq", "data"],
        {
            "type": "snapshot",
            "channel": "book.sim.BTC-USD",
            "seq": 1041,
            "data": {"bids": [[64000.5, 1.2]], "asks": [[64001.0, 0.4]], "ts": 1764070000000},
        },
    ),
    "update": _server(
        "update",
        "Update",
        "Every record of one channel in a batch window (100 ms at most).",
        {"channel": _CHANNEL, "seq": _SEQ, "data": _DATA},
        ["channel", "seq", "data"],
        {
            "type": "update",
            "channel": "trades.sim.BTC-USD",
            "seq": 1042,
            "data": [
                {
                    "id": "884213",
                    "ts": 1764070000123,
                    "price": 64000.9,
                    "size": 0.01,
                    "side": "buy",
                }
            ],
        },
    ),
    "lagged": _server(
        "lagged",
        "Lagged",
        "You read too slowly: messages from_seq..to_seq were skipped for you.",
        {
            "channel": _CHANNEL,
            "missed": {"type": "integer"},
            "from_seq": _SEQ,
            "to_seq": _SEQ,
        },
        ["channel", "missed", "from_seq", "to_seq"],
        {
            "type": "lagged",
            "channel": "trades.sim.BTC-USD",
            "missed": 380,
            "from_seq": 1043,
            "to_seq": 1090,
        },
    ),
    "heartbeat": _server(
        "heartbeat",
        "Heartbeat",
        "Every 15 s on an otherwise idle connection.",
        {"ts": _MS},
        ["ts"],
        {"type": "heartbeat", "ts": 1764070015000},
    ),
    "pong": _server(
        "pong",
        "Pong",
        "The answer to `ping`.",
        {"id": {}},
        [],
        {"type": "pong", "id": 7},
    ),
    "error": _server(
        "error",
        "Error",
        "invalid, unknown_channel, quota_exceeded, not_authenticated or plan_required.",
        {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "details": {"type": "object"},
        },
        ["code", "message"],
        {
            "type": "error",
            "code": "quota_exceeded",
            "message": "Your plan allows 50 subscriptions per connection.",
            "details": {"limit": 50, "subscribed": 50},
        },
    ),
}

CLOSE_CODES = {
    4001: "Signed out: the key was revoked or expired, or you left the organization.",
    4003: "Plan required: analytics channels on a plan without analytics.",
    4008: "Connection limit: the plan's connections are all in use.",
    4029: "Too slow or too many client messages.",
}


def asyncapi_document(*, host: str, secure: bool) -> dict[str, Any]:
    """The document, with the server entry naming `host` (the request's, validated)."""
    refs = {name: {"$ref": f"#/components/messages/{name}"} for name in CLIENT_MESSAGES}
    refs |= {name: {"$ref": f"#/components/messages/{name}"} for name in SERVER_MESSAGES}
    channel = "#/channels/stream"
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "QuantSaaS stream",
            "version": "1",
            "description": (
                "Live trades, order books, tickers, 1-minute candles and analytics over one "
                "WebSocket. JSON text frames; timestamps in milliseconds since the epoch "
                "(UTC). Authenticate with `Authorization: Bearer qs_...` on the handshake, "
                "an `auth` message, or the session cookie in the browser. Close codes: "
                + "; ".join(f"{code} {text}" for code, text in CLOSE_CODES.items())
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "quantsaas": {
                "host": host,
                "protocol": "wss" if secure else "ws",
                "pathname": STREAM_PATH,
                "security": [{"$ref": "#/components/securitySchemes/apiKey"}],
            }
        },
        "channels": {
            "stream": {
                "address": STREAM_PATH,
                "title": "The stream",
                "messages": refs,
            }
        },
        "operations": {
            **{
                f"send_{name}": {
                    "action": "send",
                    "channel": {"$ref": channel},
                    "title": message["title"],
                    "messages": [{"$ref": f"{channel}/messages/{name}"}],
                }
                for name, message in CLIENT_MESSAGES.items()
            },
            **{
                f"receive_{name}": {
                    "action": "receive",
                    "channel": {"$ref": channel},
                    "title": message["title"],
                    "messages": [{"$ref": f"{channel}/messages/{name}"}],
                }
                for name, message in SERVER_MESSAGES.items()
            },
        },
        "components": {
            "schemas": SCHEMAS,
            "messages": {**CLIENT_MESSAGES, **SERVER_MESSAGES},
            "securitySchemes": {
                "apiKey": {
                    "type": "httpApiKey",
                    "name": "Authorization",
                    "in": "header",
                    "description": "`Bearer qs_...`, or X-API-Key, or the `auth` message.",
                }
            },
        },
    }
