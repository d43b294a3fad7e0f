"""A seeded market: Heston-like stochastic variance, Poisson order arrivals, an L2 book
that market orders walk through, and informed-flow episodes.

Everything is integers inside (prices in ticks, sizes in size steps) so books never
drift by float error. The market is a deterministic function of (seed, instrument,
time): time is cut into segments (anchors.py); each segment of each instrument starts
from its anchor with a freshly quoted book and a generator seeded from (seed, symbol,
segment), and is pulled towards the next anchor (a Brownian-bridge drift), so prices
join up across segments. The same trades come out however the caller chunks time,
wherever it starts, and whichever other instruments run alongside.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeAlias

import numpy as np

from marketdata.records import BUY, SELL, BookUpdate, TickerRecord, TradeRecord
from marketdata.sim.anchors import SEGMENT_MS, anchor_log_price, segment_of, segment_rng
from marketdata.sim.params import DEFAULT_INSTRUMENTS, InstrumentParams
from quantsaas.timeutil import MINUTE_MS

EXCHANGE_ID = "sim"
SECONDS_PER_YEAR = 365 * 86_400
DAY_MS = 86_400_000
SIZE_SIGMA = 1.0  # lognormal dispersion of market-order sizes
STEP_MS = 100  # the market's clock: one step of every instrument

SimEvent: TypeAlias = TradeRecord | BookUpdate | TickerRecord


@dataclass(frozen=True)
class Episode:
    """A stretch of one-sided aggressive flow; direction +1 buyers, -1 sellers."""

    symbol: str
    start_ms: int
    end_ms: int
    direction: int


def _decimals(step: float) -> int:
    # A tick is finite, so the exponent is an int (only NaN and infinities have letters).
    return max(0, -int(Decimal(str(step)).as_tuple().exponent))


class _Draws:
    """Buffered draws from one generator: numpy's per-call overhead dominates scalar use.

    Values are consumed in a fixed order, so the stream is as deterministic as the
    generator itself.
    """

    __slots__ = ("_i", "_j", "_normals", "_rng", "_uniforms")
    BLOCK = 8192

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._uniforms: list[float] = []
        self._normals: list[float] = []
        self._i = self._j = 0

    def uniform(self) -> float:
        if self._i == len(self._uniforms):
            self._uniforms = self._rng.random(self.BLOCK).tolist()
            self._i = 0
        self._i += 1
        return self._uniforms[self._i - 1]

    def normal(self) -> float:
        if self._j == len(self._normals):
            self._normals = self._rng.standard_normal(self.BLOCK).tolist()
            self._j = 0
        self._j += 1
        return self._normals[self._j - 1]

    def poisson(self, mean: float) -> int:
        """Inversion: exact, and cheap for the small means of one time step."""
        u, k = self.uniform(), 0
        p = cdf = math.exp(-mean)
        while u > cdf and p > 0:
            k += 1
            p *= mean / k
            cdf += p
        return k

    def gamma2(self, scale: float) -> float:
        """Gamma(shape 2): the sum of two exponentials."""
        return -scale * (math.log(1.0 - self.uniform()) + math.log(1.0 - self.uniform()))


@dataclass(slots=True)
class _MinuteBar:
    """One minute of the tape, for the 24-hour ticker fields."""

    minute: int
    open: float
    high: float
    low: float
    volume: float
    quote_volume: float


class SimInstrument:
    def __init__(self, params: InstrumentParams, *, seed: int) -> None:
        self.p = params
        self.seed = seed
        self.segment: int | None = None
        self.segment_end = 0
        self.episodes: list[Episode] = []
        self.last_price = params.price
        self.minutes: deque[_MinuteBar] = deque()
        self._price_digits = _decimals(params.tick)
        self._size_digits = _decimals(params.size_step)
        self._level_steps = params.level_size / params.size_step
        self._size_mu = math.log(params.trade_size / params.size_step) - SIZE_SIGMA**2 / 2
        self._rho_c = math.sqrt(1 - params.rho**2)

    def _segment_open(self, segment: int) -> None:
        """Start `segment` from its anchor: what any process computes for that segment."""
        p = self.p
        self.segment = segment
        self.segment_end = (segment + 1) * SEGMENT_MS
        self.draw = _Draws(segment_rng(seed=self.seed, symbol=p.symbol, segment=segment))
        self.x = anchor_log_price(seed=self.seed, params=p, segment=segment)
        self.target = anchor_log_price(seed=self.seed, params=p, segment=segment + 1)
        self.v = p.theta
        self.bids: dict[int, int] = {}  # price in ticks -> size in steps
        self.asks: dict[int, int] = {}
        self._tops = (0, 0)
        self._holes: list[int] = []  # levels to refill: new in the window or emptied by trades
        # Ids: the segment's start and a counter within it, so the same trade gets the
        # same id in every process (the live feed, gap repair, backfill, demo history)
        # and the unique (instrument, trade id) key deduplicates them.
        self.next_trade_id = 1
        self._id_prefix = str(segment * SEGMENT_MS)
        self.episode: Episode | None = None
        self._requote(direction=0)

    # --- one time step ------------------------------------------------------------------
    def step(self, t0_ms: int, dt_ms: int, out: list[TradeRecord]) -> None:
        if t0_ms >= self.segment_end:
            self._segment_open(segment_of(t0_ms))
        p, draw = self.p, self.draw
        dt = dt_ms / 1000
        if self.episode is not None and t0_ms >= self.episode.end_ms:
            self.episode = None
        if self.episode is None and draw.uniform() < p.episode_rate * dt:
            low, high = p.episode_seconds
            seconds = low + (high - low) * draw.uniform()
            direction = 1 if draw.uniform() < 0.5 else -1
            # Episodes live within a segment; one that would start too close to its end
            # is skipped rather than cut to a few seconds.
            end_ms = min(t0_ms + int(seconds * 1000), self.segment_end)
            if end_ms - t0_ms >= low * 1000:
                self.episode = Episode(p.symbol, t0_ms, end_ms, direction)
                self.episodes.append(self.episode)
        direction = self.episode.direction if self.episode is not None else 0

        # Heston with full truncation; the price shock and the variance shock correlate.
        dt_y = dt / SECONDS_PER_YEAR
        z1, e = draw.normal(), draw.normal()
        z2 = p.rho * z1 + self._rho_c * e
        v = self.v
        root = math.sqrt(v * dt_y)
        self.x += -0.5 * v * dt_y + root * z1 + direction * p.episode_drift_per_second * dt
        self.v = max(v + p.kappa * (p.theta - v) * dt_y + p.xi * root * z2, 1e-6)
        # Bridge towards the next anchor: the pull grows as the segment's end nears and
        # lands on the anchor at the last step, where the next segment starts.
        self.x += (self.target - self.x) * dt_ms / (self.segment_end - t0_ms)
        self._requote(direction=direction)

        rate = p.trade_rate * (p.episode_rate_multiplier if direction else 1.0)
        n = draw.poisson(rate * dt)
        if not n:
            return
        if direction > 0:
            buy_probability = p.episode_side_probability
        elif direction < 0:
            buy_probability = 1 - p.episode_side_probability
        else:
            buy_probability = 0.5
        for offset in sorted(draw.uniform() for _ in range(n)):
            is_buy = draw.uniform() < buy_probability
            size = math.exp(self._size_mu + SIZE_SIGMA * draw.normal())
            self._market_order(t0_ms + int(offset * dt_ms), is_buy, max(1, round(size)), out)

    def _market_order(self, ts: int, is_buy: bool, size: int, out: list[TradeRecord]) -> None:
        """Walk the opposite side from the best level; one print per level filled."""
        book = self.asks if is_buy else self.bids
        side = BUY if is_buy else SELL
        remaining = size
        for level in sorted(book, reverse=not is_buy):
            if remaining <= 0:
                break
            fill = min(book[level], remaining)
            remaining -= fill
            if fill == book[level]:
                del book[level]
                self._holes.append(level)
            else:
                book[level] -= fill
            price = round(level * self.p.tick, self._price_digits)
            qty = round(fill * self.p.size_step, self._size_digits)
            out.append(
                TradeRecord(
                    exchange=EXCHANGE_ID,
                    symbol=self.p.symbol,
                    trade_id=f"{self._id_prefix}{self.next_trade_id:09d}",
                    ts=ts,
                    price=price,
                    size=qty,
                    side=side,
                    received_ts=ts,
                )
            )
            self.next_trade_id += 1
            self._tape(ts, price, qty)
        # Permanent impact (Kyle-like): signed volume moves the mid.
        filled = size - max(remaining, 0)
        gap_relative = self.p.level_gap_ticks * self.p.tick / math.exp(self.x)
        signed = filled if is_buy else -filled
        self.x += self.p.impact * gap_relative * signed / self._level_steps

    # --- the book -----------------------------------------------------------------------
    def _requote(self, *, direction: int) -> None:
        """Re-centre the book on the mid: drop levels that would cross, refill gaps.

        Bids stay at or below floor(mid - half spread) and asks at or above
        ceil(mid + half spread) on the level grid, so the book can never cross. Only
        levels that entered the window or were emptied by trades are refilled, so a
        step costs what changed, not the depth of the book.
        """
        p, draw = self.p, self.draw
        gap, depth = p.level_gap_ticks, p.depth
        mid = math.exp(self.x) / p.tick
        bid_top = max(gap * depth, math.floor((mid - p.half_spread_ticks) / gap) * gap)
        ask_top = max(bid_top + gap, math.ceil((mid + p.half_spread_ticks) / gap) * gap)
        old_bid, old_ask = self._tops
        holes = self._holes
        if bid_top != old_bid:
            self._shift(self.bids, old_bid, bid_top, -gap, holes)
        if ask_top != old_ask:
            self._shift(self.asks, old_ask, ask_top, gap, holes)
        self._tops = (bid_top, ask_top)
        if holes:
            # Informed flow: liquidity thins on the side being lifted, builds on the other.
            scale = self._level_steps / 2.0
            bid_scale = scale * (0.4 if direction < 0 else 1.0)
            ask_scale = scale * (0.4 if direction > 0 else 1.0)
            bid_low = bid_top - (depth - 1) * gap
            ask_high = ask_top + (depth - 1) * gap
            for k in holes:
                if bid_low <= k <= bid_top:
                    if k not in self.bids:
                        self.bids[k] = max(1, round(draw.gamma2(bid_scale)))
                elif ask_top <= k <= ask_high and k not in self.asks:
                    self.asks[k] = max(1, round(draw.gamma2(ask_scale)))
            holes.clear()
        # A few limit-order adds and cancels per step.
        for _ in range(draw.poisson(2.0)):
            offset = int(draw.uniform() * depth) * gap
            if draw.uniform() < 0.5:
                book, level = self.bids, bid_top - offset
            else:
                book, level = self.asks, ask_top + offset
            if level in book:
                book[level] = max(1, round(book[level] * math.exp(0.3 * draw.normal())))

    def _shift(
        self, book: dict[int, int], old_top: int, new_top: int, away: int, holes: list[int]
    ) -> None:
        """Move one side's window from old_top to new_top (`away` steps from the spread)."""
        depth = self.p.depth
        new_window = {new_top + i * away for i in range(depth)} if old_top == 0 else None
        if new_window is not None:  # first quote
            holes.extend(sorted(new_window))
            return
        moved = (new_top - old_top) // abs(away)
        if abs(moved) >= depth:
            book.clear()
            holes.extend(new_top + i * away for i in range(depth))
            return
        low, high = sorted((new_top, new_top + (depth - 1) * away))
        for k in [k for k in book if k < low or k > high]:
            del book[k]
        # Levels that entered the window: at the spread end or at the far end.
        old_low, old_high = sorted((old_top, old_top + (depth - 1) * away))
        step = abs(away)
        holes.extend(k for k in range(low, high + 1, step) if k < old_low or k > old_high)

    def book(self, ts: int, depth: int | None = None) -> BookUpdate:
        p = self.p
        bids = sorted(self.bids.items(), reverse=True)[:depth]
        asks = sorted(self.asks.items())[:depth]
        return BookUpdate(
            exchange=EXCHANGE_ID,
            symbol=p.symbol,
            ts=ts,
            bids=tuple(self._level(k, s) for k, s in bids),
            asks=tuple(self._level(k, s) for k, s in asks),
            seq=ts // STEP_MS,  # the market's step: increasing across restarts too
        )

    def _level(self, ticks: int, steps: int) -> tuple[float, float]:
        return (
            round(ticks * self.p.tick, self._price_digits),
            round(steps * self.p.size_step, self._size_digits),
        )

    # --- the ticker ---------------------------------------------------------------------
    def _tape(self, ts: int, price: float, size: float) -> None:
        self.last_price = price
        minute = ts - ts % MINUTE_MS
        if self.minutes and self.minutes[-1].minute == minute:
            bar = self.minutes[-1]
            bar.high = max(bar.high, price)
            bar.low = min(bar.low, price)
            bar.volume += size
            bar.quote_volume += size * price
        else:
            self.minutes.append(_MinuteBar(minute, price, price, price, size, size * price))
            while self.minutes and self.minutes[0].minute <= ts - DAY_MS:
                self.minutes.popleft()

    def ticker(self, ts: int) -> TickerRecord:
        while self.minutes and self.minutes[0].minute <= ts - DAY_MS:
            self.minutes.popleft()
        best_bid = max(self.bids) if self.bids else None
        best_ask = min(self.asks) if self.asks else None
        bid = self._level(best_bid, self.bids[best_bid]) if best_bid else (None, None)
        ask = self._level(best_ask, self.asks[best_ask]) if best_ask else (None, None)
        bars = self.minutes
        return TickerRecord(
            exchange=EXCHANGE_ID,
            symbol=self.p.symbol,
            ts=ts,
            last=self.last_price,
            bid=bid[0],
            ask=ask[0],
            bid_size=bid[1],
            ask_size=ask[1],
            high_24h=max((b.high for b in bars), default=self.last_price),
            low_24h=min((b.low for b in bars), default=self.last_price),
            open_24h=bars[0].open if bars else self.last_price,
            volume_24h=round(sum(b.volume for b in bars), self._size_digits),
            quote_volume_24h=round(sum(b.quote_volume for b in bars), 2),
        )


class SimExchange:
    """Several simulated instruments on one clock, advanced in fixed steps of STEP_MS.

    `advance(until_ms)` runs every whole step up to `until_ms` and returns the events in
    time order: trades as they happen, and at the end of a step a BookUpdate and a
    TickerRecord per instrument when their period (aligned to the epoch) has elapsed.
    Starting at `start_ms` first replays, silently, the segment up to it (at most
    SEGMENT_MS of simulation), so the market is the one every other process sees.
    """

    exchange_id = EXCHANGE_ID
    step_ms = STEP_MS

    def __init__(
        self,
        *,
        seed: int = 0,
        start_ms: int,
        instruments: tuple[InstrumentParams, ...] = DEFAULT_INSTRUMENTS,
        book_every_ms: int = 1000,
        ticker_every_ms: int = 1000,
        book_depth: int = 50,
    ) -> None:
        self.seed = seed
        self.start_ms = start_ms - start_ms % STEP_MS
        self.book_every_ms = max(STEP_MS, book_every_ms - book_every_ms % STEP_MS)
        self.ticker_every_ms = max(STEP_MS, ticker_every_ms - ticker_every_ms % STEP_MS)
        self.book_depth = book_depth
        self.instruments = {
            params.symbol: SimInstrument(params, seed=seed) for params in instruments
        }
        self.now_ms = self.start_ms - self.start_ms % SEGMENT_MS
        self.advance_trades(self.start_ms)
        for instrument in self.instruments.values():  # only what happens from the start
            if instrument.segment is None:  # started on a segment boundary
                instrument._segment_open(segment_of(self.start_ms))
            instrument.episodes = [e for e in instrument.episodes if e.end_ms > self.start_ms]

    @property
    def symbols(self) -> list[str]:
        return list(self.instruments)

    @property
    def episodes(self) -> list[Episode]:
        return sorted(
            (e for inst in self.instruments.values() for e in inst.episodes),
            key=lambda e: (e.start_ms, e.symbol),
        )

    def advance(self, until_ms: int, *, books: bool = True, tickers: bool = True) -> list[SimEvent]:
        events: list[SimEvent] = []
        while self.now_ms + STEP_MS <= until_ms:
            events.extend(self._step())
            if books and self.now_ms % self.book_every_ms == 0:
                events.extend(self.book(symbol) for symbol in self.instruments)
            if tickers and self.now_ms % self.ticker_every_ms == 0:
                events.extend(self.ticker(symbol) for symbol in self.instruments)
        return events

    def advance_trades(self, until_ms: int) -> list[TradeRecord]:
        """`advance` with no books and tickers: the tape alone (history, REST, replay)."""
        trades: list[TradeRecord] = []
        while self.now_ms + STEP_MS <= until_ms:
            trades.extend(self._step())
        return trades

    def _step(self) -> list[TradeRecord]:
        """One step of every instrument; its trades in time order."""
        trades: list[TradeRecord] = []
        for instrument in self.instruments.values():
            instrument.step(self.now_ms, STEP_MS, trades)
        trades.sort(key=lambda t: t.ts)  # stable: per-instrument order is kept
        self.now_ms += STEP_MS
        return trades

    def book(self, symbol: str) -> BookUpdate:
        return self.instruments[symbol].book(self.now_ms, self.book_depth)

    def ticker(self, symbol: str) -> TickerRecord:
        return self.instruments[symbol].ticker(self.now_ms)
