"""The hub's Outlet: a tick goes out at once when fan-out keeps up, and ticks are
coalesced only while recent fan-outs used up the channel's CPU budget (issue 11's
"latency that follows load"), never held longer than MAX_GAP_SECONDS, never lost.

The hub is real (in-process stores); the subscriber is a sink that records what it is
handed and, for the loaded case, spends CPU as writing to many sockets would.
"""

from __future__ import annotations

import asyncio
import time

from marketdata.streaming.events import Event
from marketdata.streaming.hub import FANOUT_SHARE, MAX_GAP_SECONDS, Hub, Outlet
from marketdata.streaming.quotas import LocalSlots
from marketdata.streaming.store import LocalStore

CHANNEL = "trades.sim.BTC-USD"


class Sink:
    """What a connection does with a fan-out: take the frame (and spend `cost` CPU)."""

    def __init__(self, cost: float = 0.0) -> None:
        self.cost = cost
        self.frames: list[tuple[float, Event]] = []

    def deliver(self, event: Event) -> None:
        self.frames.append((asyncio.get_running_loop().time(), event))
        spin_until = time.thread_time() + self.cost
        while time.thread_time() < spin_until:
            pass


def _outlet(sink: Sink) -> Outlet:
    hub = Hub(slots=LocalSlots(), store=LocalStore(seconds=60, maxlen=1_000))
    hub.subscribers[0] = {CHANNEL: {sink}}  # type: ignore[arg-type]
    return Outlet(hub, 0, CHANNEL)


def _tick(seq: int) -> Event:
    return Event.of(channel=CHANNEL, seq=seq, data=[{"p": seq}], ts=seq)


async def test_a_lone_tick_goes_out_on_the_next_loop_turn():
    sink = Sink()
    outlet = _outlet(sink)
    loop = asyncio.get_running_loop()
    for seq in range(1, 6):
        added = loop.time()
        outlet.add(_tick(seq))
        await asyncio.sleep(0)
        assert len(sink.frames) == seq, "the tick waited for a window"
        assert sink.frames[-1][0] - added < 0.05  # the old fixed window was 100 ms
        await asyncio.sleep(0.01)  # a quiet market: ticks 10 ms apart
    assert [e.seq for _, e in sink.frames] == [1, 2, 3, 4, 5]
    assert all(e.from_seq == e.seq for _, e in sink.frames)  # one tick per frame


async def test_costly_fan_outs_coalesce_ticks_without_losing_or_holding_them_long():
    # Each fan-out costs twice the budget a channel refills in the gap: ticks must merge.
    cost = 2 * MAX_GAP_SECONDS * FANOUT_SHARE
    sink = Sink(cost=cost)
    outlet = _outlet(sink)
    loop = asyncio.get_running_loop()
    added_at: dict[int, float] = {}
    for seq in range(1, 201):  # 1,000 ticks/s for 200 ms
        added_at[seq] = loop.time()
        outlet.add(_tick(seq))
        await asyncio.sleep(0.001)
    await asyncio.sleep(MAX_GAP_SECONDS * 3)

    frames = [event for _, event in sink.frames]
    delivered = [single.seq for event in frames for single in event.singles]
    assert delivered == list(range(1, 201)), "a tick was lost, repeated or reordered"
    assert len(frames) < 100, f"{len(frames)} frames for 200 ticks: nothing coalesced"
    for at, event in sink.frames:
        # The oldest tick a frame carries waited at most the gap (plus a loop turn and
        # the previous fan-out's own cost on this busy loop).
        assert at - added_at[event.from_seq] <= MAX_GAP_SECONDS + cost + 0.1
