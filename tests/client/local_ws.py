"""A scripted WebSocket peer on 127.0.0.1 for the stream client's reconnect logic.

Each test scripts what the server does per connection (send these seqs, drop
the TCP connection, close with 1012...); the real server's behaviour is
tested against daphne in test_against_server.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

TRADES = "trades.sim.BTC-USD"
BOOK = "book.sim.BTC-USD"
Handler = Callable[[ServerConnection, int, list[dict]], Awaitable[None]]


def update(channel: str, seq: int, data: Any = None) -> str:
    if data is None:
        data = [{"id": str(seq), "ts": seq, "price": 100.0 + seq, "size": 1.0, "side": "buy"}]
    return json.dumps({"type": "update", "channel": channel, "seq": seq, "data": data})


def frame(**fields: Any) -> str:
    return json.dumps(fields)


WELCOME = frame(type="welcome", plan="test", limits={"connections": 5})


async def op(ws: ServerConnection, ops: list[dict]) -> dict:
    message = json.loads(await asyncio.wait_for(ws.recv(), 5))
    ops.append(message)
    return message


async def hold(ws: ServerConnection) -> None:
    """Keep the connection open until the client leaves."""
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


@contextlib.asynccontextmanager
async def ws_server(handler: Handler) -> AsyncIterator[tuple[str, list[list[dict]]]]:
    """Yields the stream URL and, per connection, the client messages received."""
    connections: list[list[dict]] = []

    async def each(ws: ServerConnection) -> None:
        ops: list[dict] = []
        connections.append(ops)
        await handler(ws, len(connections) - 1, ops)

    async with serve(each, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws/v1/stream", connections


async def collect(stream: Any, *, until: Callable[[list], bool], seconds: float = 10) -> list:
    events: list = []

    async def run() -> None:
        async for event in stream:
            events.append(event)
            if until(events):
                return

    await asyncio.wait_for(run(), seconds)
    return events
