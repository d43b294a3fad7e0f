"""A fake Binance spot exchange on 127.0.0.1 speaking Binance's wire format.

The real ccxt code (REST and ``ccxt.pro`` websockets) talks to it, so tests
exercise the same parsing, subscription and order-book sequencing logic that
runs against the real exchange. It serves:

- REST ``/api/v3/``: exchangeInfo, aggTrades (fromId / startTime / endTime /
  limit), klines, depth, ticker/24hr; unknown symbols answer ``-1121``.
- WS ``/stream/ws/<n>``: ``SUBSCRIBE`` replies, ``@trade`` and ``@aggTrade``
  events, ``@depth`` diffs whose ``U``/``u`` come from the same counter as the
  REST ``lastUpdateId``, ``@ticker`` and ``@miniTicker``.

Trades come from a deterministic tape (seeded). Nothing is sent until a test
calls :meth:`FakeBinance.emit_trades` / :meth:`emit_depth` / :meth:`emit_ticker`,
so what a client missed is exactly known. Controls: :meth:`drop_connections`
(optionally refusing reconnects until :meth:`accept_connections`) and
:meth:`break_depth_sequence`.

The server runs on its own event loop in a background thread, so both sync
and async tests can use it; every control method is thread-safe.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from tests.fakes.venue_base import ThreadedFake

SYMBOLS = {"BTCUSDT": ("BTC", "USDT", 64000.0), "ETHUSDT": ("ETH", "USDT", 3200.0)}
BOOK_LEVELS = 20


@dataclass(frozen=True)
class TapeTrade:
    id: int
    symbol: str
    price: str
    qty: str
    time: int
    buyer_is_maker: bool

    @property
    def side(self) -> str:
        """The aggressor: a maker buyer means the taker sold."""
        return "sell" if self.buyer_is_maker else "buy"


def trade_tape(
    *, symbol: str, count: int, start_ms: int, seed: int = 7, first_id: int = 1_000_001
) -> list[TapeTrade]:
    """A deterministic sequence of trades: same seed, same tape."""
    rng = random.Random(f"{seed}:{symbol}")
    price = SYMBOLS[symbol][2]
    ts = start_ms
    tape = []
    for i in range(count):
        price = max(0.01, price * (1 + rng.gauss(0, 0.0004)))
        ts += rng.randint(1, 400)
        tape.append(
            TapeTrade(
                id=first_id + i,
                symbol=symbol,
                price=f"{price:.2f}",
                qty=f"{rng.uniform(0.0001, 0.5):.5f}",
                time=ts,
                buyer_is_maker=rng.random() < 0.5,
            )
        )
    return tape


@dataclass
class _Book:
    update_id: int = 1000
    bids: dict[str, str] = field(default_factory=dict)
    asks: dict[str, str] = field(default_factory=dict)


class FakeBinance(ThreadedFake):
    """Start with ``with FakeBinance() as fake:``; read ``fake.rest_url`` / ``fake.ws_url``."""

    name = "binance"
    ws_path = "/stream/ws"

    def __init__(self, *, tape_length: int = 5000, seed: int = 7, start_ms: int | None = None):
        super().__init__()
        start = start_ms if start_ms is not None else int(time.time() * 1000) - 3_600_000
        self.tapes = {
            s: trade_tape(symbol=s, count=tape_length, start_ms=start, seed=seed) for s in SYMBOLS
        }
        self.published: dict[str, int] = dict.fromkeys(SYMBOLS, 0)  # tape prefix made public
        self.books = {s: self._initial_book(s) for s in SYMBOLS}
        self.rng = random.Random(seed)
        self.depth_requests = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/aggTrades", self._agg_trades)
        app.router.add_get("/api/v3/klines", self._klines)
        app.router.add_get("/api/v3/depth", self._depth)
        app.router.add_get("/api/v3/ticker/24hr", self._ticker_24hr)
        app.router.add_get("/stream/ws/{n}", self._websocket)
        app.router.add_get("/stream/ws", self._websocket)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v3"

    def ccxt_urls(self) -> dict:
        """The ``urls['api']`` entries ccxt's binance needs to talk only to this fake."""
        return {"public": self.rest_url, "ws": {"spot": self.ws_url}}

    # --- test controls --------------------------------------------------------------------
    def published_tape(self, symbol: str) -> list[TapeTrade]:
        return self.tapes[symbol][: self.published[symbol]]

    def subscriptions(self) -> set[str]:
        return set().union(*self._sockets.values()) if self._sockets else set()

    def emit_trades(self, symbol: str, count: int) -> list[TapeTrade]:
        """Publish the next `count` tape trades (to REST, and to subscribers still connected)."""
        return self._call(self._emit_trades(symbol, count))

    def emit_depth(self, symbol: str, count: int = 1) -> None:
        self._call(self._emit_depth(symbol, count))

    def emit_ticker(self, symbol: str) -> None:
        self._call(self._broadcast(symbol, "ticker", self._ticker_event(symbol)))
        self._call(self._broadcast(symbol, "miniTicker", self._mini_ticker_event(symbol)))

    def break_depth_sequence(self, symbol: str, skipped: int = 5) -> None:
        """Advance the book's update counter without telling anyone: the next diff has a gap."""
        self.books[symbol].update_id += skipped

    # --- event generation -----------------------------------------------------------------
    def _initial_book(self, symbol: str) -> _Book:
        mid = SYMBOLS[symbol][2]
        book = _Book()
        for i in range(1, BOOK_LEVELS + 1):
            book.bids[f"{mid - i:.2f}"] = f"{0.1 * i:.5f}"
            book.asks[f"{mid + i:.2f}"] = f"{0.1 * i:.5f}"
        return book

    async def _emit_trades(self, symbol: str, count: int) -> list[TapeTrade]:
        start = self.published[symbol]
        batch = self.tapes[symbol][start : start + count]
        self.published[symbol] = start + len(batch)
        for trade in batch:
            await self._broadcast(symbol, "trade", self._trade_event(trade))
            await self._broadcast(symbol, "aggTrade", self._agg_trade_event(trade))
        return batch

    async def _emit_depth(self, symbol: str, count: int) -> None:
        book = self.books[symbol]
        for _ in range(count):
            first = book.update_id + 1
            changes = self.rng.randint(1, 3)
            bids, asks = [], []
            for _ in range(changes):
                side, levels = (bids, book.bids) if self.rng.random() < 0.5 else (asks, book.asks)
                price = self.rng.choice(sorted(levels))
                qty = "0.00000" if self.rng.random() < 0.1 else f"{self.rng.uniform(0.01, 3):.5f}"
                if qty == "0.00000":
                    levels.pop(price)
                else:
                    levels[price] = qty
                side.append([price, qty])
            book.update_id += changes  # one id per change, from the same counter as lastUpdateId
            event = {
                "e": "depthUpdate",
                "E": _now_ms(),
                "s": symbol,
                "U": first,
                "u": book.update_id,
                "b": bids,
                "a": asks,
            }
            await self._broadcast(symbol, "depth", event)

    def _trade_event(self, t: TapeTrade) -> dict:
        return {
            "e": "trade",
            "E": t.time,
            "s": t.symbol,
            "t": t.id,
            "p": t.price,
            "q": t.qty,
            "T": t.time,
            "m": t.buyer_is_maker,
            "M": True,
        }

    def _agg_trade_event(self, t: TapeTrade) -> dict:
        # One trade per aggregate, so aggregate ids equal trade ids on this fake.
        return {
            "e": "aggTrade",
            "E": t.time,
            "s": t.symbol,
            "a": t.id,
            "p": t.price,
            "q": t.qty,
            "f": t.id,
            "l": t.id,
            "T": t.time,
            "m": t.buyer_is_maker,
            "M": True,
        }

    def _stats(self, symbol: str) -> dict:
        trades = self.published_tape(symbol) or self.tapes[symbol][:1]
        prices = [float(t.price) for t in trades]
        book = self.books[symbol]
        best_bid = max(book.bids, key=float)
        best_ask = min(book.asks, key=float)
        return {
            "open": trades[0].price,
            "last": trades[-1],
            "high": f"{max(prices):.2f}",
            "low": f"{min(prices):.2f}",
            "volume": f"{sum(float(t.qty) for t in trades):.5f}",
            "quote": f"{sum(float(t.qty) * float(t.price) for t in trades):.2f}",
            "change": f"{prices[-1] - prices[0]:.2f}",
            "pct": f"{(prices[-1] / prices[0] - 1) * 100:.3f}",
            "bid": (best_bid, book.bids[best_bid]),
            "ask": (best_ask, book.asks[best_ask]),
            "first": trades[0],
            "count": len(trades),
        }

    def _ticker_event(self, symbol: str) -> dict:
        s = self._stats(symbol)
        return {
            "e": "24hrTicker",
            "E": _now_ms(),
            "s": symbol,
            "p": s["change"],
            "P": s["pct"],
            "w": s["last"].price,
            "x": s["open"],
            "c": s["last"].price,
            "Q": s["last"].qty,
            "b": s["bid"][0],
            "B": s["bid"][1],
            "a": s["ask"][0],
            "A": s["ask"][1],
            "o": s["open"],
            "h": s["high"],
            "l": s["low"],
            "v": s["volume"],
            "q": s["quote"],
            "O": s["first"].time,
            "C": s["last"].time,
            "F": s["first"].id,
            "L": s["last"].id,
            "n": s["count"],
        }

    def _mini_ticker_event(self, symbol: str) -> dict:
        s = self._stats(symbol)
        return {
            "e": "24hrMiniTicker",
            "E": _now_ms(),
            "s": symbol,
            "c": s["last"].price,
            "o": s["open"],
            "h": s["high"],
            "l": s["low"],
            "v": s["volume"],
            "q": s["quote"],
        }

    # --- websocket ------------------------------------------------------------------------
    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = await self._ws_open(request)
        if ws is None:
            return web.Response(status=503, text="maintenance")
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                payload = json.loads(msg.data)
                method = payload.get("method")
                if method == "SUBSCRIBE":
                    self._sockets[ws].update(payload.get("params", []))
                elif method == "UNSUBSCRIBE":
                    self._sockets[ws].difference_update(payload.get("params", []))
                await ws.send_str(json.dumps({"result": None, "id": payload.get("id")}))
        finally:
            self._sockets.pop(ws, None)
        return ws

    async def _broadcast(self, symbol: str, stream: str, event: dict) -> None:
        prefix = f"{symbol.lower()}@{stream}"
        text = json.dumps(event)
        for ws, streams in list(self._sockets.items()):
            # "@depth" subscriptions carry a rate suffix ("btcusdt@depth@100ms").
            if any(s == prefix or s.startswith(prefix + "@") for s in streams):
                try:
                    await ws.send_str(text)
                except ConnectionError:
                    self._sockets.pop(ws, None)

    # --- REST -----------------------------------------------------------------------------
    def _symbol(self, request: web.Request) -> str | None:
        self.requests.append(f"{request.path}?{request.query_string}")
        symbol = request.query.get("symbol")
        return symbol if symbol in SYMBOLS else None

    @staticmethod
    def _bad_symbol() -> web.Response:
        return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)

    async def _exchange_info(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        symbols = [
            {
                "symbol": sym,
                "status": "TRADING",
                "baseAsset": base,
                "baseAssetPrecision": 8,
                "quoteAsset": quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
                "icebergAllowed": True,
                "ocoAllowed": True,
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": "0.01000000",
                        "maxPrice": "1000000.00000000",
                        "tickSize": "0.01000000",
                    },
                    {
                        "filterType": "LOT_SIZE",
                        "minQty": "0.00001000",
                        "maxQty": "9000.00000000",
                        "stepSize": "0.00001000",
                    },
                ],
                "permissions": [],
                "permissionSets": [["SPOT"]],
                "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_MAKER"],
            }
            for sym, (base, quote, _) in SYMBOLS.items()
        ]
        return web.json_response(
            {
                "timezone": "UTC",
                "serverTime": _now_ms(),
                "rateLimits": [],
                "exchangeFilters": [],
                "symbols": symbols,
            }
        )

    async def _agg_trades(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        if symbol is None:
            return self._bad_symbol()
        q = request.query
        limit = min(int(q.get("limit", 500)), 1000)
        trades = self.published_tape(symbol)
        if "fromId" in q:
            trades = [t for t in trades if t.id >= int(q["fromId"])]
        if "startTime" in q:
            trades = [t for t in trades if t.time >= int(q["startTime"])]
        if "endTime" in q:
            trades = [t for t in trades if t.time <= int(q["endTime"])]
        # Binance answers the oldest `limit` of a range, or the newest when no range is given.
        ranged = any(k in q for k in ("fromId", "startTime", "endTime"))
        trades = trades[:limit] if ranged else trades[-limit:]
        return web.json_response(
            [
                {
                    "a": t.id,
                    "p": t.price,
                    "q": t.qty,
                    "f": t.id,
                    "l": t.id,
                    "T": t.time,
                    "m": t.buyer_is_maker,
                    "M": True,
                }
                for t in trades
            ]
        )

    async def _klines(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        if symbol is None:
            return self._bad_symbol()
        q = request.query
        if q.get("interval") != "1m":
            return web.json_response({"code": -1120, "msg": "Invalid interval."}, status=400)
        limit = min(int(q.get("limit", 500)), 1000)
        start = int(q.get("startTime", 0))
        end = int(q.get("endTime", 2**62))
        buckets: dict[int, list[TapeTrade]] = {}
        for t in self.published_tape(symbol):
            minute = t.time - t.time % 60_000
            if start <= minute <= end:
                buckets.setdefault(minute, []).append(t)
        rows = []
        for minute in sorted(buckets)[:limit]:
            ts = buckets[minute]
            prices = [float(t.price) for t in ts]
            volume = sum(float(t.qty) for t in ts)
            quote = sum(float(t.qty) * float(t.price) for t in ts)
            taker = [t for t in ts if not t.buyer_is_maker]
            rows.append(
                [
                    minute,
                    ts[0].price,
                    f"{max(prices):.2f}",
                    f"{min(prices):.2f}",
                    ts[-1].price,
                    f"{volume:.5f}",
                    minute + 59_999,
                    f"{quote:.2f}",
                    len(ts),
                    f"{sum(float(t.qty) for t in taker):.5f}",
                    f"{sum(float(t.qty) * float(t.price) for t in taker):.2f}",
                    "0",
                ]
            )
        return web.json_response(rows)

    async def _depth(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        if symbol is None:
            return self._bad_symbol()
        self.depth_requests += 1
        limit = int(request.query.get("limit", 100))
        book = self.books[symbol]
        bids = sorted(book.bids.items(), key=lambda kv: -float(kv[0]))[:limit]
        asks = sorted(book.asks.items(), key=lambda kv: float(kv[0]))[:limit]
        return web.json_response(
            {
                "lastUpdateId": book.update_id,
                "bids": [list(level) for level in bids],
                "asks": [list(level) for level in asks],
            }
        )

    async def _ticker_24hr(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request)
        if symbol is None:
            return self._bad_symbol()
        e = self._ticker_event(symbol)
        return web.json_response(
            {
                "symbol": symbol,
                "priceChange": e["p"],
                "priceChangePercent": e["P"],
                "weightedAvgPrice": e["w"],
                "prevClosePrice": e["x"],
                "lastPrice": e["c"],
                "lastQty": e["Q"],
                "bidPrice": e["b"],
                "bidQty": e["B"],
                "askPrice": e["a"],
                "askQty": e["A"],
                "openPrice": e["o"],
                "highPrice": e["h"],
                "lowPrice": e["l"],
                "volume": e["v"],
                "quoteVolume": e["q"],
                "openTime": e["O"],
                "closeTime": e["C"],
                "firstId": e["F"],
                "lastId": e["L"],
                "count": e["n"],
            }
        )


def _now_ms() -> int:
    return int(time.time() * 1000)
