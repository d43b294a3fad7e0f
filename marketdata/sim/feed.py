"""The simulator as a live feed: an async iterator of records paced by the wall clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from marketdata.sim.market import SimEvent, SimExchange
from quantsaas.timeutil import now_ms


async def sim_stream(
    sim: SimExchange, *, speed: float = 1.0, poll_seconds: float = 0.1
) -> AsyncIterator[SimEvent]:
    """Yield the simulator's events as simulated time passes.

    At `speed` 1.0 simulated time is wall-clock time (trades are stamped "now", and a
    restarted feed continues the market where the clock stands); 10.0 runs ten times
    faster from the simulator's start; 0 (or less) runs as fast as the consumer reads,
    one step at a time. The tape does not depend on the pacing: the simulator only
    advances in whole steps, and it is a function of time alone (market.py).
    """
    wall_start = time.monotonic()
    sim_start = sim.now_ms
    while True:
        if speed == 1:
            target = now_ms()
        elif speed > 0:
            target = sim_start + int((time.monotonic() - wall_start) * 1000 * speed)
        else:
            target = sim.now_ms + sim.step_ms
        for event in sim.advance(target):
            yield event
        await asyncio.sleep(poll_seconds if speed > 0 else 0)
