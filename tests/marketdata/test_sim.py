"""The simulated exchange: deterministic, statistically sane, and informative."""

from __future__ import annotations

import itertools
import random
import statistics
from dataclasses import replace

from marketdata.records import BUY, BookUpdate, TickerRecord, TradeRecord
from marketdata.sim import DEFAULT_INSTRUMENTS, SimExchange
from marketdata.sim.history import sim_history

START = 1_764_000_000_000  # a whole minute
BTC = DEFAULT_INSTRUMENTS[0]


def _trades(events) -> list[TradeRecord]:
    return [e for e in events if isinstance(e, TradeRecord)]


def test_same_seed_gives_the_same_tape_and_another_seed_a_different_one():
    first = SimExchange(seed=7, start_ms=START).advance(START + 120_000)
    again = SimExchange(seed=7, start_ms=START).advance(START + 120_000)
    other = SimExchange(seed=8, start_ms=START).advance(START + 120_000)

    assert first == again
    assert _trades(first) != _trades(other)
    assert {type(e) for e in first} == {TradeRecord, BookUpdate, TickerRecord}


def test_tape_does_not_depend_on_how_the_caller_chunks_time():
    whole = SimExchange(seed=3, start_ms=START).advance(START + 90_000)
    sim = SimExchange(seed=3, start_ms=START)
    chunked, now, rng = [], START, random.Random(1)
    while now < START + 90_000:
        now = min(START + 90_000, now + rng.randint(1, 5_000))
        chunked.extend(sim.advance(now))

    assert chunked == whole


def test_market_orders_arrive_as_a_poisson_process_at_the_configured_rate():
    calm = replace(BTC, episode_rate=0.0)
    seconds = 15 * 60
    sim = SimExchange(seed=11, start_ms=START, instruments=(calm,))
    trades = _trades(sim.advance(START + seconds * 1000, books=False, tickers=False))
    # One market order may print several trades (one per level); they share a timestamp.
    arrivals = sorted({t.ts for t in trades})
    expected = calm.trade_rate * seconds

    assert abs(len(arrivals) - expected) < 5 * expected**0.5
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    coefficient_of_variation = statistics.pstdev(gaps) / statistics.mean(gaps)
    assert 0.85 < coefficient_of_variation < 1.15  # exponential inter-arrival times


def test_book_is_never_crossed_and_levels_are_ordered_on_the_tick_grid():
    sim = SimExchange(seed=5, start_ms=START, book_every_ms=100)
    books = [e for e in sim.advance(START + 180_000, tickers=False) if isinstance(e, BookUpdate)]

    assert len(books) == 3 * 1800
    for book in books:
        bids = [price for price, _ in book.bids]
        asks = [price for price, _ in book.asks]
        assert bids == sorted(bids, reverse=True) and len(set(bids)) == len(bids)
        assert asks == sorted(asks) and len(set(asks)) == len(asks)
        assert bids[0] < asks[0]
        assert all(size > 0 for _, size in book.bids + book.asks)
    assert all(b.seq > a.seq for a, b in zip(books[:-3], books[3:], strict=True))


def test_large_orders_walk_through_several_levels_of_the_book():
    _, trades = sim_history(minutes=10, seed=2, end_ms=START, instruments=(BTC,))
    by_order: dict[tuple[int, str], list[float]] = {}
    for t in trades:
        by_order.setdefault((t.ts, t.side), []).append(t.price)

    walks = [prices for prices in by_order.values() if len(prices) > 1]
    assert walks, "some market orders are bigger than the best level"
    for (_, side), prices in ((k, v) for k, v in by_order.items() if len(v) > 1):
        assert prices == sorted(prices, reverse=side != BUY)


def test_prices_and_sizes_respect_the_instruments_tick_and_step():
    _, trades = sim_history(minutes=5, seed=4, end_ms=START)
    steps = {p.symbol: (p.tick, p.size_step) for p in DEFAULT_INSTRUMENTS}
    for t in trades:
        tick, step = steps[t.symbol]
        assert abs(t.price / tick - round(t.price / tick)) < 1e-6
        assert abs(t.size / step - round(t.size / step)) < 1e-6
        assert t.size > 0


def test_informed_episodes_produce_one_sided_aggressive_flow():
    lively = replace(BTC, episode_rate=1 / 240)
    sim, trades = sim_history(minutes=60, seed=9, end_ms=START, instruments=(lively,))
    assert len(sim.episodes) >= 3

    def buy_share(selected: list[TradeRecord]) -> float:
        volume = sum(t.size for t in selected)
        return sum(t.size for t in selected if t.side == BUY) / volume

    inside: set[int] = set()
    for episode in sim.episodes:
        window = [t for t in trades if episode.start_ms <= t.ts < episode.end_ms]
        inside.update(id(t) for t in window)
        share = buy_share(window)
        assert share > 0.7 if episode.direction > 0 else share < 0.3, (episode, share)
        # Informed flow also comes faster than the calm market's order rate.
        seconds = (episode.end_ms - episode.start_ms) / 1000
        assert len({t.ts for t in window}) / seconds > 1.5 * lively.trade_rate

    calm = [t for t in trades if id(t) not in inside]
    assert 0.4 < buy_share(calm) < 0.6
