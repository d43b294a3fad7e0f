"""A client that reads too slowly loses records explicitly (lagged), never silently."""

from __future__ import annotations

import asyncio
import json

from marketdata.streaming.connection import Connection
from marketdata.streaming.events import Event


class SlowSocket:
    """Stands in for the ASGI send of one client: it accepts frames only when let."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.gate = asyncio.Event()

    async def send(self, message: dict) -> None:
        await self.gate.wait()
        self.sent.append(json.loads(message["text"]))


async def _close(code: int, reason: str) -> None:
    return None


def connection(socket: SlowSocket, latest: dict) -> Connection:
    conn = Connection(
        connection_id="c1",
        organization_id=1,
        delay_seconds=0,
        send=socket.send,
        close=_close,
        snapshot_for=lambda channel, delay: latest.get(channel),
        queue_frames=8,
    )
    conn.channels |= {"trades.sim.BTC-USD", "book.sim.BTC-USD"}
    return conn


async def test_a_full_queue_turns_into_lagged_counts_and_a_fresh_book_snapshot():
    socket, latest = SlowSocket(), {}
    conn = connection(socket, latest)
    conn.start()
    for seq in range(1, 31):
        conn.deliver(
            Event.of(channel="trades.sim.BTC-USD", seq=seq, data=[{"id": seq}, {"id": -seq}], ts=0)
        )
        book = Event.of(channel="book.sim.BTC-USD", seq=seq, data={"bids": [[seq, 1]]}, ts=0)
        latest["book.sim.BTC-USD"] = book
        conn.deliver(book)
    assert conn.lagging_since is not None
    socket.gate.set()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if not conn.frames and conn.lagging_since is None:
            break
    frames = socket.sent
    trades = [f for f in frames if f.get("channel") == "trades.sim.BTC-USD"]
    updates = [f for f in trades if f["type"] == "update"]
    lagged = [f for f in trades if f["type"] == "lagged"]
    assert len(lagged) == 1
    # Every trade is either delivered or counted in `lagged`, and the seq range says which.
    delivered = sum(len(f["data"]) for f in updates)
    assert delivered + lagged[0]["missed"] == 60
    assert lagged[0]["from_seq"] == updates[-1]["seq"] + 1 and lagged[0]["to_seq"] == 30
    book_frames = [f for f in frames if f.get("channel") == "book.sim.BTC-USD"]
    assert book_frames[-1] == {
        "type": "snapshot",
        "channel": "book.sim.BTC-USD",
        "seq": 30,
        "data": {"bids": [[30, 1]]},
    }
    await conn.stop()


async def test_a_client_that_stays_behind_is_reported_lagging_for_the_close_rule():
    socket = SlowSocket()
    conn = connection(socket, {})
    conn.start()
    for seq in range(1, 20):
        conn.deliver(Event.of(channel="trades.sim.BTC-USD", seq=seq, data=[{"id": seq}], ts=0))
    since = conn.lagging_since
    assert since is not None and conn.lagging_for(since + 11) > 10
    await conn.stop()
