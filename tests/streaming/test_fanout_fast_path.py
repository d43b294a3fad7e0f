"""The fan-out's fast path: shared wire frames and the publisher's adaptive window."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from channels.layers import get_channel_layer
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from marketdata.feeds.groups import channel_group
from marketdata.feeds.publish import Publisher
from marketdata.streaming import frames
from marketdata.streaming.hub import Event

TRADES = "trades.sim.BTC-USD"


def parse_frame(wire: bytes) -> Frame:
    """Read `wire` with the websockets client's own parser, as a client would."""
    reader = StreamReader()
    reader.feed_data(wire)
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        assert not reader.buffer, "bytes left over after the frame"
        return done.value
    raise AssertionError("the client would wait for more bytes")


@pytest.mark.parametrize("records", [0, 1, 2, 700, 1200])
def test_the_shared_wire_frame_is_one_whole_text_message_a_client_reads_back(records):
    # 0..2 records fit the 7-bit length, 700 the 16-bit one, 1200 (over 64 KiB) the 64-bit one.
    data = [
        {"id": str(i), "ts": i, "price": 1.5, "size": 0.1, "side": "buy"} for i in range(records)
    ]
    event = Event(channel=TRADES, seq=41, data=data, ts=0)
    frame = parse_frame(event.update_wire)
    assert frame.opcode is Opcode.TEXT and frame.fin and not (frame.rsv1 or frame.rsv2)
    assert frame.data.decode() == event.update_frame
    assert orjson.loads(frame.data) == {
        "type": "update",
        "channel": TRADES,
        "seq": 41,
        "data": data,
    }
    snapshot = parse_frame(event.snapshot_wire)
    assert orjson.loads(snapshot.data)["type"] == "snapshot"


def test_a_control_frame_on_the_wire_is_the_same_json():
    text = frames.pong(ping_id=7)
    assert parse_frame(frames.wire(text.encode())).data.decode() == text


def trade(i: int) -> dict:
    return {"id": str(i), "ts": int(time.time() * 1000), "price": 1.0, "size": 1.0, "side": "buy"}


async def test_a_record_after_a_quiet_window_goes_at_once_and_a_burst_waits_for_the_window():
    layer = get_channel_layer()
    listener = await layer.new_channel("fast-path-test.")
    await layer.group_add(channel_group(TRADES), listener)
    publisher = Publisher(window_seconds=0.5)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        await publisher.publish("trades", "sim", "BTC/USD", [trade(1)])
        first = await asyncio.wait_for(layer.receive(listener), 5)
        first_at = loop.time()
        assert [t["id"] for t in first["data"]] == ["1"]
        assert first_at - started < 0.25  # no batching delay on a quiet channel

        for i in range(2, 6):  # a burst right after: held for the rest of the window, one message
            await publisher.publish("trades", "sim", "BTC/USD", [trade(i)])
        second = await asyncio.wait_for(layer.receive(listener), 5)
        assert [t["id"] for t in second["data"]] == ["2", "3", "4", "5"]
        assert second["seq"] == first["seq"] + 1
        assert loop.time() - first_at >= 0.4  # at most one message per window
    finally:
        await layer.group_discard(channel_group(TRADES), listener)
