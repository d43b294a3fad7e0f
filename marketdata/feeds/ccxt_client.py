"""The feed client for real exchanges, through ccxt.pro (websockets) and ccxt REST.

Venue differences stay in configuration (``config.py``) and in the integrity
checks of ``venues.py``; this module turns ccxt's unified structures into our
records. Timestamps are honest: a book or ticker the venue sent without a time
has ``exchange_ts=None`` (``ts`` is then our receipt time, see ``records.py``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Awaitable
from typing import Any, TypeAlias, TypedDict, TypeVar

import ccxt
import ccxt.pro as ccxtpro

from marketdata.feeds.base import BookOutOfSync, FeedClient, StreamDisconnected, VenueUnreachable
from marketdata.feeds.config import ExchangeConfig
from marketdata.feeds.venues import VENUE_CLASSES, synthetic_trade_id
from marketdata.records import BUY, SELL, BookUpdate, CandleRecord, TickerRecord, TradeRecord

_OTHER_SIDE = {BUY: SELL, SELL: BUY}
OCCURRENCE_MEMORY_MS = 120_000  # how long live twins are remembered for synthetic ids

T = TypeVar("T")
# ccxt's markets: symbol -> its market structure (open: ccxt's, per venue).
Markets: TypeAlias = dict[str, dict[str, Any]]
# Identical prints told apart for synthetic ids: (ts, price, size, side) -> seen so far.
Twins: TypeAlias = Counter[tuple[int, str, str, str]]


class CcxtTrade(TypedDict):
    """ccxt's unified trade structure: the fields read here."""

    id: str | None
    timestamp: int
    price: float
    amount: float
    side: str | None
    info: Any  # the venue's own message (a list for Kraken's REST rows)


class CcxtOrderBook(TypedDict):
    """ccxt's unified order book: levels are [price, amount, ...], best first."""

    bids: list[list[float]]
    asks: list[list[float]]
    timestamp: int | None
    nonce: int | None


class CcxtTicker(TypedDict, total=False):
    """ccxt's unified ticker: the fields read here (a venue may leave any out)."""

    timestamp: int | None
    last: float | None
    close: float | None
    bid: float | None
    ask: float | None
    bidVolume: float | None
    askVolume: float | None
    high: float | None
    low: float | None
    open: float | None
    baseVolume: float | None
    quoteVolume: float | None


def _now_ms() -> int:
    return int(time.time() * 1000)


def ccxt_exchange(config: ExchangeConfig, *, markets: Markets | None = None) -> ccxtpro.Exchange:
    """A fresh ccxt.pro instance for one event loop, pointed at `config.urls` if given."""
    params: dict[str, Any] = {"options": dict(config.ccxt_options), "enableRateLimit": True}
    if markets:
        params["markets"] = markets  # skips the markets request on every reconnect
    exchange = VENUE_CLASSES.get(config.id, getattr(ccxtpro, config.id))(params)
    for key, value in config.urls.items():
        if isinstance(value, dict) and isinstance(exchange.urls["api"].get(key), dict):
            exchange.urls["api"][key] = {**exchange.urls["api"][key], **value}
        else:
            exchange.urls["api"][key] = value
    return exchange


async def markets_load(config: ExchangeConfig) -> Markets:
    """Load an exchange's markets once; every stream client reuses them."""
    exchange = ccxt_exchange(config)
    try:
        markets: Markets = await exchange.load_markets()
        return markets
    except ccxt.NetworkError as exc:
        raise VenueUnreachable(f"{config.id}: {exc}") from exc
    finally:
        await exchange.close()


class CcxtFeedClient(FeedClient):
    def __init__(self, config: ExchangeConfig, *, markets: Markets | None = None) -> None:
        self.config = config
        self.exchange = config.id
        self._markets = markets
        self.api = ccxt_exchange(config, markets=markets)
        self._live_twins: Twins = Counter()  # prints seen live

    async def close(self) -> None:
        await self.api.close()

    async def _reconnect(self) -> None:
        """A fresh ccxt instance: its first subscription starts from a snapshot."""
        await self.api.close()
        self.api = ccxt_exchange(self.config, markets=self._markets)

    def _integrity(self) -> str | None:
        """What venues.py found wrong on the wire since the last call (once)."""
        error: str | None = getattr(self.api, "integrity_error", None)
        if error is not None:
            self.api.integrity_error = None
        return error

    async def _call(self, coro: Awaitable[T]) -> T:
        """Translate ccxt's errors into the two situations a stream recovers from."""
        try:
            return await coro
        except (ccxt.ChecksumError, ccxt.InvalidNonce) as exc:
            raise BookOutOfSync(str(exc)) from exc
        except ccxt.NetworkError as exc:
            raise StreamDisconnected(str(exc)) from exc

    # --- live ---------------------------------------------------------------------------
    async def watch_trades(self, symbol: str) -> list[TradeRecord]:
        trades: list[CcxtTrade] = await self._call(
            self.api.watch_trades(symbol, params=dict(self.config.watch_trades_params))
        )
        if error := self._integrity():
            # Messages were lost: reconnecting makes the stream repair the gap through REST.
            raise StreamDisconnected(error)
        return self._trades(symbol, trades, _now_ms(), twins=self._live_twins)

    async def watch_book(self, symbol: str, depth: int) -> BookUpdate:
        try:
            book: CcxtOrderBook = await self._call(
                self.api.watch_order_book(symbol, self.config.book_subscribe_depth)
            )
            if error := self._integrity():
                raise BookOutOfSync(error)
        except BookOutOfSync:
            if self.config.book_resync == "reconnect":
                await self._reconnect()
            raise
        received = _now_ms()
        return BookUpdate(
            exchange=self.exchange,
            symbol=symbol,
            ts=book.get("timestamp") or received,
            bids=tuple((float(lvl[0]), float(lvl[1])) for lvl in book["bids"][:depth]),
            asks=tuple((float(lvl[0]), float(lvl[1])) for lvl in book["asks"][:depth]),
            seq=book.get("nonce"),
            exchange_ts=book.get("timestamp"),
        )

    async def watch_ticker(self, symbol: str) -> TickerRecord:
        ticker: CcxtTicker = await self._call(
            self.api.watch_ticker(symbol, params=dict(self.config.watch_ticker_params))
        )
        if error := self._integrity():
            raise StreamDisconnected(error)
        return self._ticker(symbol, ticker)

    # --- REST ---------------------------------------------------------------------------
    async def fetch_trades(
        self, symbol: str, *, since: int | None, from_id: str | None = None, limit: int = 1000
    ) -> list[TradeRecord]:
        params: dict[str, str] = {}
        trades: list[CcxtTrade]
        if from_id is not None and self.config.repair_from_id_param:
            params[self.config.repair_from_id_param] = from_id
            since = None
        style = self.config.fetch_trades_style
        if since is not None and style == "window":
            trades = await self._fetch_window(symbol, since, limit)
        else:
            if since is not None and style == "since_ns":
                # Nanoseconds keep millisecond precision (seconds would repeat pages), and
                # one nanosecond less includes trades at `since` whatever the venue's edge.
                params["since"] = str(since * 1_000_000 - 1)
            trades = await self._call(self.api.fetch_trades(symbol, since, limit, params))
        records = self._trades(symbol, trades, _now_ms(), twins=Counter())
        if since is not None:
            records = [t for t in records if t.ts >= since]
        return records

    async def _fetch_window(self, symbol: str, since: int, limit: int) -> list[CcxtTrade]:
        """Every trade in [since, since + window], oldest first.

        The venue answers the newest `limit` trades of a window (whole seconds); when
        a page is full, the rest of the window is older: ask again up to the oldest
        second received, until a page is not full.
        """
        end = min(since + (self.config.fetch_trades_window_ms or 3_600_000), _now_ms())
        by_id: dict[str, CcxtTrade] = {}
        while True:
            page: list[CcxtTrade] = await self._call(
                self.api.fetch_trades(symbol, since, limit, {"until": end})
            )
            by_id.update((_window_key(t), t) for t in page)
            if len(page) < limit:
                break
            oldest_second = min(t["timestamp"] for t in page) // 1000 * 1000
            if oldest_second >= end or oldest_second <= since:
                break  # a single second holds more than a page: nothing older to ask for
            end = oldest_second
        return sorted(by_id.values(), key=lambda t: (t["timestamp"], _window_key(t)))

    async def fetch_candles(
        self, symbol: str, *, since: int, limit: int = 1000
    ) -> list[CandleRecord]:
        since -= since % 60_000  # venues answer candles opening at or after `since`
        # [open time, open, high, low, close, volume] per candle
        rows: list[list[float]] = await self._call(self.api.fetch_ohlcv(symbol, "1m", since, limit))
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
    def _trades(
        self,
        symbol: str,
        trades: list[CcxtTrade],
        received: int,
        *,
        twins: Twins | None = None,
    ) -> list[TradeRecord]:
        """One exchange batch to records, in one comprehension: it runs for every trade.

        `twins` counts identical prints for synthetic ids: per REST page (pages start
        on a whole millisecond), or across the live batches of this connection.
        """
        exchange = self.exchange
        rows = trades and isinstance(trades[0].get("info"), list)  # Kraken's REST rows
        ids = _venue_ids(trades) if rows else [t["id"] for t in trades]
        records = [
            TradeRecord(
                exchange=exchange,
                symbol=symbol,
                trade_id=str(trade_id),
                ts=_trade_ms(t) if rows else int(t["timestamp"]),
                price=float(t["price"]),
                size=float(t["amount"]),
                # A venue that does not publish the aggressor is recorded as buy-initiated.
                side=side if (side := t.get("side")) in (BUY, SELL) else BUY,
                received_ts=received,
            )
            for t, trade_id in zip(trades, ids, strict=True)
        ]
        if self.config.trade_side_is_maker:
            records = [dataclasses.replace(r, side=_OTHER_SIDE[r.side]) for r in records]
        if None in ids:
            missing = [i is None for i in ids]
            records = self._synthetic_ids(records, missing, Counter() if twins is None else twins)
        return records

    def _synthetic_ids(
        self, records: list[TradeRecord], missing: list[bool], twins: Twins
    ) -> list[TradeRecord]:
        out = []
        for record, needs_id in zip(records, missing, strict=True):
            if needs_id:
                key = (record.ts, repr(record.price), repr(record.size), record.side)
                occurrence = twins[key]
                twins[key] += 1
                trade_id = synthetic_trade_id(
                    exchange=record.exchange,
                    symbol=record.symbol,
                    ts=record.ts,
                    price=key[1],
                    size=key[2],
                    side=record.side,
                    occurrence=occurrence,
                )
                record = dataclasses.replace(record, trade_id=trade_id)
            out.append(record)
        if twins is getattr(self, "_live_twins", None) and out:
            horizon = out[-1].ts - OCCURRENCE_MEMORY_MS
            for key in [k for k in twins if k[0] < horizon]:
                del twins[key]
        return out

    def _ticker(self, symbol: str, t: CcxtTicker) -> TickerRecord:
        def num(value: float | None) -> float | None:
            return float(value) if value is not None else None

        return TickerRecord(
            exchange=self.exchange,
            symbol=symbol,
            ts=t.get("timestamp") or _now_ms(),
            exchange_ts=t.get("timestamp"),
            last=float(t.get("last") or t.get("close") or 0.0),
            bid=num(t.get("bid")),
            ask=num(t.get("ask")),
            bid_size=num(t.get("bidVolume")),
            ask_size=num(t.get("askVolume")),
            high_24h=num(t.get("high")),
            low_24h=num(t.get("low")),
            open_24h=num(t.get("open")),
            volume_24h=num(t.get("baseVolume")),
            quote_volume_24h=num(t.get("quoteVolume")),
        )


def _window_key(t: CcxtTrade) -> str:
    """Pages of one window overlap: the same trade must be kept once (by id if it has one)."""
    if t.get("id") is not None:
        return str(t["id"])
    return f"{t['timestamp']}|{t['price']}|{t['amount']}|{t.get('side')}"


def _venue_ids(trades: list[CcxtTrade]) -> list[str | None]:
    """The venue's trade ids, None where it printed none.

    Kraken's REST rows are lists with the id 7th; ccxt appends the page cursor to the
    last row and reads the 7th element as the id, so a last row printed without an id
    would carry the cursor as its id. A row is taken to hold a real id only when it is
    long enough to have one besides the appended cursor.
    """
    ids: list[str | None] = []
    for i, t in enumerate(trades):
        info = t.get("info")
        if isinstance(info, list) and len(info) < (8 if i == len(trades) - 1 else 7):
            ids.append(None)
        else:
            ids.append(t.get("id"))
    return ids


def _trade_ms(t: CcxtTrade) -> int:
    """The trade's millisecond. Kraken's REST prints seconds as a float; ccxt truncates
    `seconds * 1000`, which float rounding can put one millisecond early, so the same
    trade seen live (an ISO time) and through REST would disagree."""
    info = t.get("info")
    if isinstance(info, list) and len(info) > 2 and isinstance(info[2], int | float | str):
        try:
            return math.floor(float(info[2]) * 1000 + 1e-3)
        except ValueError:
            pass
    return int(t["timestamp"])
