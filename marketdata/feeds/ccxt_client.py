"""The feed client for real exchanges, through ccxt.pro (websockets) and ccxt REST."""

from __future__ import annotations

import time

import ccxt
import ccxt.pro as ccxtpro

from marketdata.feeds.base import BookOutOfSync, FeedClient, StreamDisconnected
from marketdata.feeds.config import ExchangeConfig
from marketdata.records import BUY, SELL, BookUpdate, CandleRecord, TickerRecord, TradeRecord


def _now_ms() -> int:
    return int(time.time() * 1000)


def ccxt_exchange(config: ExchangeConfig, *, markets: dict | None = None) -> ccxtpro.Exchange:
    """A fresh ccxt.pro instance for one event loop, pointed at `config.urls` if given."""
    params: dict = {"options": dict(config.ccxt_options), "enableRateLimit": True}
    if markets:
        params["markets"] = markets  # skips the markets request on every reconnect
    exchange = getattr(ccxtpro, config.id)(params)
    for key, value in config.urls.items():
        if isinstance(value, dict) and isinstance(exchange.urls["api"].get(key), dict):
            exchange.urls["api"][key] = {**exchange.urls["api"][key], **value}
        else:
            exchange.urls["api"][key] = value
    return exchange


async def markets_load(config: ExchangeConfig) -> dict:
    """Load an exchange's markets once; every stream client reuses them."""
    exchange = ccxt_exchange(config)
    try:
        return await exchange.load_markets()
    finally:
        await exchange.close()


class CcxtFeedClient(FeedClient):
    def __init__(self, config: ExchangeConfig, *, markets: dict | None = None) -> None:
        self.config = config
        self.exchange = config.id
        self.api = ccxt_exchange(config, markets=markets)

    async def close(self) -> None:
        await self.api.close()

    async def _call(self, coro):
        """Translate ccxt's errors into the two situations a stream recovers from."""
        try:
            return await coro
        except (ccxt.ChecksumError, ccxt.InvalidNonce) as exc:
            raise BookOutOfSync(str(exc)) from exc
        except ccxt.NetworkError as exc:
            raise StreamDisconnected(str(exc)) from exc

    # --- live ---------------------------------------------------------------------------
    async def watch_trades(self, symbol: str) -> list[TradeRecord]:
        trades = await self._call(
            self.api.watch_trades(symbol, params=dict(self.config.watch_trades_params))
        )
        return self._trades(symbol, trades, _now_ms())

    async def watch_book(self, symbol: str, depth: int) -> BookUpdate:
        book = await self._call(self.api.watch_order_book(symbol))
        return BookUpdate(
            exchange=self.exchange,
            symbol=symbol,
            ts=book.get("timestamp") or _now_ms(),
            bids=tuple((float(lvl[0]), float(lvl[1])) for lvl in book["bids"][:depth]),
            asks=tuple((float(lvl[0]), float(lvl[1])) for lvl in book["asks"][:depth]),
            seq=book.get("nonce"),
        )

    async def watch_ticker(self, symbol: str) -> TickerRecord:
        ticker = await self._call(
            self.api.watch_ticker(symbol, params=dict(self.config.watch_ticker_params))
        )
        return self._ticker(symbol, ticker)

    # --- REST ---------------------------------------------------------------------------
    async def fetch_trades(
        self, symbol: str, *, since: int | None, from_id: str | None = None, limit: int = 1000
    ) -> list[TradeRecord]:
        params = {}
        if from_id is not None and self.config.repair_from_id_param:
            params[self.config.repair_from_id_param] = from_id
            since = None
        trades = await self._call(self.api.fetch_trades(symbol, since, limit, params))
        return self._trades(symbol, trades, _now_ms())

    async def fetch_candles(
        self, symbol: str, *, since: int, limit: int = 1000
    ) -> list[CandleRecord]:
        rows = await self._call(self.api.fetch_ohlcv(symbol, "1m", since, limit))
        now = _now_ms()
        return [
            CandleRecord(
                exchange=self.exchange,
                symbol=symbol,
                ts=int(row[0]),
                open=float(row[1]),
                high=float(row[2]),
                low=float(row[3]),
                close=float(row[4]),
                volume=float(row[5] or 0.0),
                buy_volume=0.0,  # not in the OHLCV shape; roll-ups from trades fill it in
                trade_count=0,
                is_final=int(row[0]) + 60_000 <= now,
            )
            for row in rows
            if int(row[0]) + 60_000 <= now  # the open minute comes from live trades instead
        ]

    # --- normalisation ------------------------------------------------------------------
    def _trades(self, symbol: str, trades: list[dict], received: int) -> list[TradeRecord]:
        """One exchange batch to records, in one comprehension: it runs for every trade."""
        exchange = self.exchange
        return [
            TradeRecord(
                exchange=exchange,
                symbol=symbol,
                trade_id=str(t["id"]),
                ts=int(t["timestamp"]),
                price=float(t["price"]),
                size=float(t["amount"]),
                # A venue that does not publish the aggressor is recorded as buy-initiated.
                side=side if (side := t.get("side")) in (BUY, SELL) else BUY,
                received_ts=received,
            )
            for t in trades
        ]

    def _ticker(self, symbol: str, t: dict) -> TickerRecord:
        def num(key: str) -> float | None:
            value = t.get(key)
            return float(value) if value is not None else None

        return TickerRecord(
            exchange=self.exchange,
            symbol=symbol,
            ts=t.get("timestamp") or _now_ms(),
            last=float(t.get("last") or t.get("close") or 0.0),
            bid=num("bid"),
            ask=num("ask"),
            bid_size=num("bidVolume"),
            ask_size=num("askVolume"),
            high_24h=num("high"),
            low_24h=num("low"),
            open_24h=num("open"),
            volume_24h=num("baseVolume"),
            quote_volume_24h=num("quoteVolume"),
        )
