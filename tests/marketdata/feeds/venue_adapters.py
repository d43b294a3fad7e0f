"""One vocabulary over the three fake venues, so one test matrix runs against each.

Each adapter names the venue's market, what "subscribed" looks like on its wire,
how to publish trades, book changes and tickers, and how to break its book
integrity (Binance: a depth sequence gap; Coinbase: a sequence_num jump;
Kraken: a corrupted CRC32 checksum).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tests.fakes.binance_server import FakeBinance
from tests.fakes.coinbase_server import FakeCoinbase
from tests.fakes.kraken_server import FakeKraken

KINDS = ("trades", "book", "ticker")


@dataclass
class VenueAdapter:
    id: str
    fake: Any
    market: str  # the venue's own market id
    symbol: str  # ccxt's unified symbol
    quote: str

    # --- wire -------------------------------------------------------------------------------
    def subscribed(self, kinds=KINDS):
        wanted = self._wire_subscriptions(kinds)
        return lambda: wanted <= self.fake.subscriptions()

    def _wire_subscriptions(self, kinds) -> set:
        if self.id == "binance":
            names = {"trades": "aggTrade", "book": "depth@100ms", "ticker": "ticker"}
            return {f"{self.market.lower()}@{names[k]}" for k in kinds}
        names = (
            {"trades": "market_trades", "book": "level2", "ticker": "ticker"}
            if self.id == "coinbase"
            else {"trades": "trade", "book": "book", "ticker": "ticker"}
        )
        return {(names[k], self.market) for k in kinds}

    async def emit_trades(self, count: int):
        return await asyncio.to_thread(self.fake.emit_trades, self.market, count)

    async def emit_book(self, count: int = 1) -> None:
        method = self.fake.emit_depth if self.id == "binance" else self.fake.emit_book
        await asyncio.to_thread(method, self.market, count)

    async def emit_ticker(self) -> None:
        await asyncio.to_thread(self.fake.emit_ticker, self.market)

    def break_book(self) -> None:
        """The next book message shows the local book can no longer be trusted."""
        if self.id == "binance":
            self.fake.break_depth_sequence(self.market)
        elif self.id == "coinbase":
            self.fake.skip_sequence()
        else:
            self.fake.corrupt_next_checksum()

    @property
    def book_snapshots(self) -> int:
        return self.fake.depth_requests if self.id == "binance" else self.fake.book_snapshots

    # --- expectations -------------------------------------------------------------------------
    def tape(self):
        return self.fake.published_tape(self.market)

    def tape_rows(self) -> list[tuple]:
        return [(str(t.id), float(t.price), float(t.qty), t.side) for t in self.tape()]

    def best(self) -> tuple[tuple[float, float], tuple[float, float]]:
        book = self.fake.books[self.market]
        if self.id == "binance":
            bid = max(book.bids, key=float)
            ask = min(book.asks, key=float)
            return (float(bid), float(book.bids[bid])), (float(ask), float(book.asks[ask]))
        (bid, bid_qty), (ask, ask_qty) = book.top("bids", 1)[0], book.top("asks", 1)[0]
        return (float(bid), float(bid_qty)), (float(ask), float(ask_qty))

    def bids(self, n: int) -> list[tuple[float, float]]:
        book = self.fake.books[self.market]
        levels = sorted(((float(p), float(q)) for p, q in book.bids.items()), reverse=True)
        return levels[:n]

    def rest_path(self, kind: str) -> str:
        return {
            ("binance", "trades"): "/api/v3/aggTrades",
            ("coinbase", "trades"): "/ticker",
            ("kraken", "trades"): "/0/public/Trades",
            ("binance", "candles"): "/api/v3/klines",
            ("coinbase", "candles"): "/candles",
            ("kraken", "candles"): "/0/public/OHLC",
        }[(self.id, kind)]


def venue_start(venue_id: str, **fake_kwargs) -> VenueAdapter:
    """A started fake for `venue_id`, wrapped in its adapter (the caller stops `fake`)."""
    if venue_id == "binance":
        fake = FakeBinance(**fake_kwargs)
        adapter = VenueAdapter("binance", fake, "BTCUSDT", "BTC/USDT", "USDT")
    elif venue_id == "coinbase":
        fake = FakeCoinbase(**fake_kwargs)
        adapter = VenueAdapter("coinbase", fake, "BTC-USD", "BTC/USD", "USD")
    else:
        fake = FakeKraken(**fake_kwargs)
        adapter = VenueAdapter("kraken", fake, "BTC/USD", "BTC/USD", "USD")
    fake.start()
    return adapter
