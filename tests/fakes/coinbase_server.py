"""A fake Coinbase Advanced Trade on 127.0.0.1 speaking its wire format to the real ccxt.

- REST ``/api/v3/brokerage/market/``: ``products`` (spot; an empty FUTURE list),
  ``products/{id}/ticker`` (public market trades: the newest ``limit`` trades in
  [``start``, ``end``] UNIX seconds, newest first) and ``products/{id}/candles``
  (``ONE_MINUTE``, newest first, ``start`` as UNIX seconds strings).
- WS ``/ws``: ``{"type": "subscribe", "channel": ..., "product_ids": [...]}`` for
  ``market_trades`` (a snapshot of recent trades, then updates), ``level2`` (answered
  on channel ``l2_data``: a snapshot, then updates; sides ``bid``/``offer``) and
  ``ticker``. Every message carries the connection's ``sequence_num``, counting every
  message on that connection from 0, as Coinbase documents; :meth:`skip_sequence`
  makes the next message jump, which is how a missed message shows.

Quirk kept on purpose: a trade's ``side`` is the maker order's side (Coinbase's
matches report the resting order), so an aggressive buy prints as ``SELL``.
"""

from __future__ import annotations

import json

from aiohttp import WSMsgType, web

from tests.fakes.venue_base import FakeVenue, TapeTrade, iso_ms, minute_buckets

CHANNELS = ("market_trades", "level2", "ticker")
TRADES_SNAPSHOT = 50  # recent trades sent on a market_trades subscription


def _now_iso() -> str:
    import time

    return iso_ms(int(time.time() * 1000), 9)


class FakeCoinbase(FakeVenue):
    name = "coinbase"
    markets = {"BTC-USD": ("BTC", "USD", 64000.0, 2), "ETH-USD": ("ETH", "USD", 3200.0, 2)}

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._sequence: dict[web.WebSocketResponse, int] = {}
        self._lost: dict[web.WebSocketResponse, int] = {}

    def routes(self, app: web.Application) -> None:
        base = "/api/v3/brokerage/market/products"
        app.router.add_get(base, self._products)
        app.router.add_get(base + "/{product_id}/ticker", self._market_trades)
        app.router.add_get(base + "/{product_id}/candles", self._candles)
        app.router.add_get("/v2/currencies", self._fiat)
        app.router.add_get("/v2/currencies/crypto", self._crypto)
        app.router.add_get("/v2/exchange-rates", self._rates)
        app.router.add_get("/ws", self._websocket)

    def ccxt_urls(self) -> dict:
        """The ``urls['api']`` entries ccxt's coinbase needs to talk only to this fake."""
        return {"rest": self.rest_url, "ws": self.ws_url}

    def skip_sequence(self, skipped: int = 3) -> None:
        """Every open connection's next message jumps its sequence_num: a message was lost."""
        for ws in list(self._sequence):
            self._sequence[ws] += skipped

    def lose_messages(self, count: int = 1) -> None:
        """The next `count` messages of every open connection are numbered but never
        arrive, as when a message is lost on the way: their content is lost too."""
        for ws in list(self._sequence):
            self._lost[ws] = self._lost.get(ws, 0) + count

    # --- websocket ------------------------------------------------------------------------
    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = await self._ws_open(request)
        if ws is None:
            return web.Response(status=503, text="maintenance")
        self._sequence[ws] = 0
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_message(ws, json.loads(msg.data))
        finally:
            self._sockets.pop(ws, None)
            self._sequence.pop(ws, None)
            self._lost.pop(ws, None)
        return ws

    async def _on_message(self, ws: web.WebSocketResponse, payload: dict) -> None:
        channel = payload.get("channel")
        products = [p for p in payload.get("product_ids", []) if p in self.markets]
        if payload.get("type") != "subscribe" or channel not in CHANNELS:
            await self._envelope(ws, None, [], error="Failure to subscribe")
            return
        for product in products:
            self._sockets[ws].add((channel, product))
            if channel == "market_trades":
                recent = self.published_tape(product)[-TRADES_SNAPSHOT:]
                if recent:
                    await self._envelope(ws, channel, [_trades_event("snapshot", recent)])
            elif channel == "level2":
                self.book_snapshots += 1
                book = self.books[product]
                updates = [
                    _level("bid" if side == "bids" else "offer", price, qty, "1970-01-01T00:00:00Z")
                    for side in ("bids", "asks")
                    for price, qty in book.top(side, 10_000)
                ]
                event = {"type": "snapshot", "product_id": product, "updates": updates}
                await self._envelope(ws, "l2_data", [event])
            else:
                await self._envelope(ws, "ticker", [self._ticker_event("snapshot", product)])
        subscribed: dict[str, list[str]] = {}
        for name, product in sorted(self._sockets.get(ws, ())):
            subscribed.setdefault(name, []).append(product)
        await self._envelope(ws, "subscriptions", [{"subscriptions": subscribed}])

    async def _envelope(self, ws, channel, events, *, error: str | None = None) -> None:
        if ws not in self._sequence:
            return
        if error:
            message = {"type": "error", "message": error}
        else:
            message = {
                "channel": channel,
                "client_id": "",
                "timestamp": _now_iso(),
                "sequence_num": self._sequence[ws],
                "events": events,
            }
        self._sequence[ws] += 1
        if self._lost.get(ws):
            self._lost[ws] -= 1
            return
        await self._send(ws, json.dumps(message))

    async def _broadcast(self, channel: str, market: str, wire_channel: str, events) -> None:
        for ws in self._subscribers(channel, market):
            await self._envelope(ws, wire_channel, events)

    async def trades_out(self, market: str, batch: list[TapeTrade]) -> None:
        if batch:
            event = _trades_event("update", batch)
            await self._broadcast("market_trades", market, "market_trades", [event])

    async def _emit_book(self, market: str, count: int) -> None:
        for _ in range(count):
            now = _now_iso()
            updates = [
                _level("bid" if side == "bids" else "offer", price, qty, now)
                for side, price, qty in self._book_changes(market)
            ]
            event = {"type": "update", "product_id": market, "updates": updates}
            await self._broadcast("level2", market, "l2_data", [event])

    async def _emit_ticker(self, market: str) -> None:
        await self._broadcast("ticker", market, "ticker", [self._ticker_event("update", market)])

    def _ticker_event(self, kind: str, market: str) -> dict:
        s = self._stats(market)
        last = float(s["last"].price)
        return {
            "type": kind,
            "tickers": [
                {
                    "type": "ticker",
                    "product_id": market,
                    "price": s["last"].price,
                    "volume_24_h": f"{s['volume']:.8f}",
                    "low_24_h": f"{s['low']:.2f}",
                    "high_24_h": f"{s['high']:.2f}",
                    "low_52_w": f"{s['low']:.2f}",
                    "high_52_w": f"{s['high']:.2f}",
                    "price_percent_chg_24_h": f"{(last / s['open'] - 1) * 100:.8f}",
                    "best_bid": s["bid"][0],
                    "best_bid_quantity": s["bid"][1],
                    "best_ask": s["ask"][0],
                    "best_ask_quantity": s["ask"][1],
                }
            ],
        }

    # --- REST -----------------------------------------------------------------------------
    @staticmethod
    def _not_found() -> web.Response:
        return web.json_response(
            {"error": "NOT_FOUND", "message": "product not found", "error_details": ""},
            status=404,
        )

    async def _fiat(self, request: web.Request) -> web.Response:
        self._log(request)
        return web.json_response({"data": [{"id": "USD", "name": "US Dollar", "min_size": "0.01"}]})

    async def _crypto(self, request: web.Request) -> web.Response:
        self._log(request)
        coins = sorted({base for base, _, _, _ in self.markets.values()})
        data = [
            {
                "asset_id": f"asset-{code.lower()}",
                "code": code,
                "name": code.title(),
                "color": "#000000",
                "sort_index": i,
                "exponent": 8,
                "type": "crypto",
                "address_regex": "",
            }
            for i, code in enumerate(coins)
        ]
        return web.json_response({"data": data})

    async def _rates(self, request: web.Request) -> web.Response:
        self._log(request)
        rates = {"USD": "1"}
        for market, (base, _, price, _) in self.markets.items():
            rates[base] = f"{1 / float(self._stats(market)['last'].price or price):.12f}"
        return web.json_response({"data": {"currency": "USD", "rates": rates}})

    async def _products(self, request: web.Request) -> web.Response:
        self._log(request)
        if request.query.get("product_type", "SPOT") != "SPOT":
            return web.json_response({"products": [], "num_products": 0})
        products = [
            {
                "product_id": market,
                "price": self._stats(market)["last"].price,
                "price_percentage_change_24h": "0",
                "volume_24h": "0",
                "volume_percentage_change_24h": "0",
                "base_increment": "0.00000001",
                "quote_increment": "0.01",
                "quote_min_size": "1",
                "quote_max_size": "150000000",
                "base_min_size": "0.00000001",
                "base_max_size": "3400",
                "base_name": base,
                "quote_name": quote,
                "watched": False,
                "is_disabled": False,
                "new": False,
                "status": "online",
                "cancel_only": False,
                "limit_only": False,
                "post_only": False,
                "trading_disabled": False,
                "auction_mode": False,
                "product_type": "SPOT",
                "quote_currency_id": quote,
                "base_currency_id": base,
                "fcm_trading_session_details": None,
                "mid_market_price": "",
                "alias": "",
                "alias_to": [],
                "base_display_symbol": base,
                "quote_display_symbol": quote,
                "view_only": False,
                "price_increment": "0.01",
                "display_name": f"{base}-{quote}",
                "product_venue": "CBE",
                "approximate_quote_24h_volume": "0",
            }
            for market, (base, quote, _, _) in self.markets.items()
        ]
        return web.json_response({"products": products, "num_products": len(products)})

    async def _market_trades(self, request: web.Request) -> web.Response:
        self._log(request)
        market = request.match_info["product_id"]
        if market not in self.markets:
            return self._not_found()
        q = request.query
        limit = min(int(q.get("limit", 100)), 1000)
        start_ms = int(q["start"]) * 1000 if "start" in q else 0
        end_ms = int(q["end"]) * 1000 + 999 if "end" in q else 2**62  # whole seconds, inclusive
        trades = [t for t in self.published_tape(market) if start_ms <= t.time <= end_ms]
        newest_first = [_trade(t) for t in reversed(trades[-limit:])]
        s = self._stats(market)
        return web.json_response(
            {"trades": newest_first, "best_bid": s["bid"][0], "best_ask": s["ask"][0]}
        )

    async def _candles(self, request: web.Request) -> web.Response:
        self._log(request)
        market = request.match_info["product_id"]
        if market not in self.markets:
            return self._not_found()
        q = request.query
        if q.get("granularity") != "ONE_MINUTE":
            return web.json_response(
                {"error": "INVALID_ARGUMENT", "message": "granularity", "error_details": ""},
                status=400,
            )
        start, end = int(q["start"]) * 1000, int(q["end"]) * 1000
        buckets = minute_buckets(self.published_tape(market), start, end)
        limit = min(int(q.get("limit", 350)), 350)
        candles = []
        for minute in sorted(buckets)[:limit]:
            prices = [float(t.price) for t in buckets[minute]]
            candles.append(
                {
                    "start": str(minute // 1000),
                    "low": f"{min(prices):.2f}",
                    "high": f"{max(prices):.2f}",
                    "open": buckets[minute][0].price,
                    "close": buckets[minute][-1].price,
                    "volume": f"{sum(float(t.qty) for t in buckets[minute]):.8f}",
                }
            )
        return web.json_response({"candles": list(reversed(candles))})


def _maker_side(t: TapeTrade) -> str:
    return "SELL" if t.side == "buy" else "BUY"


def _trade(t: TapeTrade) -> dict:
    return {
        "trade_id": str(t.id),
        "product_id": t.symbol,
        "price": t.price,
        "size": t.qty,
        "time": iso_ms(t.time),
        "side": _maker_side(t),
        "bid": "",
        "ask": "",
        "exchange": "",
    }


def _trades_event(kind: str, trades: list[TapeTrade]) -> dict:
    """Coinbase lists a batch's trades newest first."""
    return {
        "type": kind,
        "trades": [
            {k: v for k, v in _trade(t).items() if k not in ("bid", "ask", "exchange")}
            for t in reversed(trades)
        ],
    }


def _level(side: str, price: str, qty: str, event_time: str) -> dict:
    return {"side": side, "event_time": event_time, "price_level": price, "new_quantity": qty}
