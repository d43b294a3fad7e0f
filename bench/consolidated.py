"""Consolidated BBO latency: a venue's book tick -> the `bbo.consolidated` frame a hub reads.

    REDIS_URL=redis://... .venv/bin/python bench/consolidated.py   # --ticks 3000 --rate 300

The feed runner's own parts, in process: two venues' books go through the Publisher
(as BookStream.accept sends them) and the Consolidator; a reader does what every
web process's hub does, one blocking XREAD over the channels, and parses each frame.
Every tick moves the best bid to a price of its own on one venue (alternating), so
each tick changes the consolidated BBO and its frame names the tick. Baseline, in the
same run: the same tick's frame on the venue's own `book` channel. Prints p50 / p99
of both (ms) and the ratio. Uses its own Redis keys (`bench` venues) and deletes them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantsaas.settings")
os.environ.setdefault("DEBUG", "1")
os.environ["CONSOLIDATED_EXCLUDE"] = "sim"

import django

django.setup()

import orjson  # noqa: E402

from marketdata.feeds.consolidator import Consolidator  # noqa: E402
from marketdata.feeds.health import StreamHealth  # noqa: E402
from marketdata.feeds.publish import Publisher, book_payload  # noqa: E402
from marketdata.records import BookUpdate  # noqa: E402
from marketdata.streaming.store import (  # noqa: E402
    keyframe_key,
    replay_key,
    state_key,
    store_for_settings,
)

VENUES = ("benchcoinbase", "benchkraken")
PAIR = "BENCH-USD"
BBO = f"bbo.consolidated.{PAIR}"
RAW = [f"book.{v}.{PAIR}" for v in VENUES]
BOOK = f"book.consolidated.{PAIR}"


def book(venue: str, tick: int) -> BookUpdate:
    best = 60000.0 + tick * 0.01  # a price of this tick's own: the frame names the tick
    bids = ((best, 1.0), *((59000.0 - i, 1.0) for i in range(49)))
    asks = tuple((61000.0 + i, 1.0) for i in range(50))
    return BookUpdate(exchange=venue, symbol="BENCH/USD", ts=tick, bids=bids, asks=asks)


async def run(ticks: int, rate: float) -> None:
    store = store_for_settings()
    channels = [BBO, BOOK, *RAW]
    await store.client.delete(
        *[k for c in channels for k in (replay_key(c), state_key(c), keyframe_key(c))]
    )
    publisher = Publisher(store=store)
    instruments = [
        SimpleNamespace(exchange_id=v, symbol=PAIR, ccxt_symbol="BENCH/USD") for v in VENUES
    ]
    healths = [StreamHealth(exchange=v, kind="book", symbol="BENCH/USD") for v in VENUES]
    for health in healths:
        health.connected = True
    consolidator = Consolidator(publisher, instruments, healths)
    sent: dict[int, int] = {}
    seen: dict[str, dict[int, int]] = {"bbo": {}, "raw": {}}
    reader = store.reader()
    cursors = {c: "$" for c in (BBO, *RAW)}
    done = asyncio.Event()

    async def read() -> None:
        while not done.is_set():
            for channel, messages in await reader.read(cursors):
                now = time.perf_counter_ns()
                cursors[channel] = messages[-1].id
                for message in messages:
                    data = orjson.loads(message.data)
                    if channel == BBO:
                        prices = [data["bid"]] if data.get("bid") else []
                        target = seen["bbo"]
                    else:
                        prices = [level[0] for level in data.get("bids", []) if level[1]]
                        target = seen["raw"]
                    for price in prices:
                        tick = round((price - 60000.0) * 100)
                        if 0 <= tick < ticks:
                            target.setdefault(tick, now)

    task = asyncio.ensure_future(read())
    await asyncio.sleep(0.2)  # the reader's first XREAD is in place
    start = time.perf_counter()
    for tick in range(ticks):
        venue = VENUES[tick % 2]
        update = book(venue, tick)
        sent[tick] = time.perf_counter_ns()
        await publisher.publish("book", venue, "BENCH/USD", book_payload(update))
        await consolidator.book(update)
        delay = start + (tick + 1) / rate - time.perf_counter()
        await asyncio.sleep(max(0.0, delay))
    await asyncio.sleep(1.0)
    done.set()
    await reader.wake()
    await task
    await reader.aclose()
    await store.client.delete(
        *[k for c in channels for k in (replay_key(c), state_key(c), keyframe_key(c))]
    )
    await store.aclose()

    def latencies(kind: str) -> list[float]:
        return sorted((seen[kind][t] - sent[t]) / 1e6 for t in seen[kind])

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]

    bbo, raw = latencies("bbo"), latencies("raw")
    print(f"ticks {ticks} at {rate:.0f}/s; ticks seen: bbo {len(bbo)}, venue book {len(raw)}")
    print(f"venue book frame   p50 {pct(raw, 0.5):.2f} ms  p99 {pct(raw, 0.99):.2f} ms")
    print(f"consolidated bbo   p50 {pct(bbo, 0.5):.2f} ms  p99 {pct(bbo, 0.99):.2f} ms")
    mean = statistics.mean(bbo) / statistics.mean(raw)
    print(f"ratio bbo/venue    p50 {pct(bbo, 0.5) / pct(raw, 0.5):.2f}x  mean {mean:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=300.0)
    args = parser.parse_args()
    asyncio.run(run(args.ticks, args.rate))


if __name__ == "__main__":
    main()
