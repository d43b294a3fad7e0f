"""A fake Kraken spot exchange on 127.0.0.1 speaking its wire format to the real ccxt.

ccxt 4.5 talks to Kraken's websocket **v2** (``/v2``) for public data, so that is
what this fake speaks:

- REST ``/0/public/``: ``Assets``, ``AssetPairs`` (``XXBTZUSD``: altname ``XBTUSD``,
  wsname ``XBT/USD``, ``pair_decimals`` 1, ``lot_decimals`` 8), ``Trades`` (``since`` in
  seconds or nanoseconds, oldest first, ``count`` at most 1000, rows
  ``[price, volume, time, b|s, m|l, misc, trade_id]`` and ``last`` as the next cursor)
  and ``OHLC`` (``interval=1``, candles opening after ``since``). Errors are
  ``{"error": ["EQuery:Unknown asset pair"]}``.
- WS ``/v2``: ``{"method": "subscribe", "params": {"channel": ..., "symbol": [...]},
  "req_id": n}`` answered with Kraken's ack, then a ``snapshot`` and ``update``
  messages on ``trade``, ``book`` (every message carries the CRC32 checksum of the
  top 10 levels, computed as Kraken documents it) and ``ticker`` (no timestamp:
  Kraken sends none). ``ping`` gets ``pong``. v2 names BTC as ``BTC/USD``.

Controls beyond the base: :meth:`corrupt_next_checksum`, and ``trade_ids=False``
to print trades without ids (as venues without trade ids do).
"""

from __future__ import annotations

import json
import time
import zlib

from aiohttp import WSMsgType, web

from tests.fakes.venue_base import FakeVenue, TapeTrade, iso_ms, minute_buckets

CHECKSUM_LEVELS = 10
TRADES_SNAPSHOT = 50
# v2 symbol -> (REST pair id, altname, base asset, quote asset)
PAIRS = {
    "BTC/USD": ("XXBTZUSD", "XBTUSD", "XXBT", "ZUSD"),
    "ETH/USD": ("XETHZUSD", "ETHUSD", "XETH", "ZUSD"),
}
ASSETS = {"XXBT": "XBT", "XETH": "ETH", "ZUSD": "USD"}
PRICE_DECIMALS, LOT_DECIMALS = 1, 8


class FakeKraken(FakeVenue):
    name = "kraken"
    ws_path = "/v2"
    markets = {"BTC/USD": ("XBT", "USD", 64000.0, 1), "ETH/USD": ("ETH", "USD", 3200.0, 1)}

    def __init__(self, *, trade_ids: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.trade_ids = trade_ids
        self._corrupt_next = False
        self.checksums_sent = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/0/public/Assets", self._assets)
        app.router.add_get("/0/public/AssetPairs", self._asset_pairs)
        app.router.add_get("/0/public/Trades", self._trades)
        app.router.add_get("/0/public/OHLC", self._ohlc)
        app.router.add_get("/v2", self._websocket)

    def ccxt_urls(self) -> dict:
        """The ``urls['api']`` entries ccxt's kraken needs to talk only to this fake."""
        return {"public": self.rest_url, "ws": {"publicV2": self.ws_url}}

    def corrupt_next_checksum(self) -> None:
        """The next book update carries a wrong checksum, as after a lost message."""
        self._corrupt_next = True

    def checksum(self, market: str) -> int:
        """Kraken's documented CRC32 over the top 10 asks then top 10 bids."""
        book = self.books[market]
        text = ""
        for side in ("asks", "bids"):
            for price, qty in book.top(side, CHECKSUM_LEVELS):
                for value in (price, qty):
                    text += value.replace(".", "").lstrip("0")
        return zlib.crc32(text.encode())

    # --- websocket ------------------------------------------------------------------------
    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = await self._ws_open(request)
        if ws is None:
            return web.Response(status=503, text="maintenance")
        status = {"api_version": "v2", "connection_id": self.connections, "system": "online"}
        await self._send(ws, json.dumps({"channel": "status", "type": "update", "data": [status]}))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_message(ws, json.loads(msg.data))
        finally:
            self._sockets.pop(ws, None)
        return ws

    async def _on_message(self, ws: web.WebSocketResponse, payload: dict) -> None:
        method, req_id = payload.get("method"), payload.get("req_id")
        stamp = iso_ms(_now_ms())
        if method == "ping":
            reply = {"method": "pong", "req_id": req_id, "time_in": stamp, "time_out": stamp}
            await self._send(ws, json.dumps(reply))
            return
        params = payload.get("params") or {}
        channel = params.get("channel")
        if method != "subscribe" or channel not in ("trade", "book", "ticker"):
            error = {"error": "Event(s) not found", "method": method, "success": False}
            await self._send(ws, json.dumps({**error, "req_id": req_id}))
            return
        for symbol in params.get("symbol", []):
            if symbol not in self.markets:
                error = {"error": "Currency pair not supported", "method": "subscribe"}
                await self._send(ws, json.dumps({**error, "success": False, "req_id": req_id}))
                continue
            result = {"channel": channel, "symbol": symbol, "snapshot": True}
            if channel == "book":
                result["depth"] = int(params.get("depth", 10))
            ack = {"method": "subscribe", "result": result, "success": True}
            await self._send(ws, json.dumps({**ack, "time_in": stamp, "time_out": stamp}))
            self._sockets[ws].add((channel, symbol))
            await self._snapshot(ws, channel, symbol, int(params.get("depth", 10)))

    async def _snapshot(self, ws, channel: str, symbol: str, depth: int) -> None:
        if channel == "trade":
            recent = self.published_tape(symbol)[-TRADES_SNAPSHOT:]
            if not recent:
                return  # an empty snapshot names no symbol, and ccxt cannot route it
            message = {"channel": "trade", "type": "snapshot", "data": self._ws_trades(recent)}
        elif channel == "book":
            self.book_snapshots += 1
            book = self.books[symbol]
            data = {
                "symbol": symbol,
                "bids": [_level(p, q) for p, q in book.top("bids", depth)],
                "asks": [_level(p, q) for p, q in book.top("asks", depth)],
                "checksum": self.checksum(symbol),
            }
            message = {"channel": "book", "type": "snapshot", "data": [data]}
        else:
            message = {"channel": "ticker", "type": "snapshot", "data": [self._ticker(symbol)]}
        await self._send(ws, json.dumps(message))

    async def _broadcast(self, channel: str, market: str, message: dict) -> None:
        text = json.dumps(message)
        for ws in self._subscribers(channel, market):
            await self._send(ws, text)

    def _ws_trades(self, trades: list[TapeTrade]) -> list[dict]:
        out = []
        for t in trades:
            row = {
                "symbol": t.symbol,
                "side": t.side,
                "price": float(t.price),
                "qty": float(t.qty),
                "ord_type": "market",
                "trade_id": t.id,
                "timestamp": iso_ms(t.time),
            }
            if not self.trade_ids:
                del row["trade_id"]
            out.append(row)
        return out

    async def trades_out(self, market: str, batch: list[TapeTrade]) -> None:
        if batch:
            message = {"channel": "trade", "type": "update", "data": self._ws_trades(batch)}
            await self._broadcast("trade", market, message)

    async def _emit_book(self, market: str, count: int) -> None:
        for _ in range(count):
            changes = self._book_changes(market)
            checksum = self.checksum(market)
            self.checksums_sent += 1
            if self._corrupt_next:
                checksum ^= 0x5A5A5A5A
                self._corrupt_next = False
            data = {
                "symbol": market,
                "bids": [_level(p, q) for side, p, q in changes if side == "bids"],
                "asks": [_level(p, q) for side, p, q in changes if side == "asks"],
                "checksum": checksum,
                "timestamp": iso_ms(_now_ms()),
            }
            message = {"channel": "book", "type": "update", "data": [data]}
            await self._broadcast("book", market, message)

    async def _emit_ticker(self, market: str) -> None:
        message = {"channel": "ticker", "type": "update", "data": [self._ticker(market)]}
        await self._broadcast("ticker", market, message)

    def _ticker(self, market: str) -> dict:
        s = self._stats(market)
        last = float(s["last"].price)
        return {
            "symbol": market,
            "bid": float(s["bid"][0]),
            "bid_qty": float(s["bid"][1]),
            "ask": float(s["ask"][0]),
            "ask_qty": float(s["ask"][1]),
            "last": last,
            "volume": round(s["volume"], 8),
            "vwap": round(s["vwap"], 1),
            "low": s["low"],
            "high": s["high"],
            "change": round(last - s["open"], 1),
            "change_pct": round((last / s["open"] - 1) * 100, 2),
        }

    # --- REST -----------------------------------------------------------------------------
    def _market(self, request: web.Request) -> str | None:
        self._log(request)
        pair = request.query.get("pair")
        for symbol, (pair_id, altname, _, _) in PAIRS.items():
            if pair in (pair_id, altname):
                return symbol
        return None

    @staticmethod
    def _error(message: str) -> web.Response:
        return web.json_response({"error": [message]})

    async def _assets(self, request: web.Request) -> web.Response:
        self._log(request)
        result = {
            asset: {
                "aclass": "currency",
                "altname": altname,
                "decimals": 10 if altname != "USD" else 4,
                "display_decimals": 5 if altname != "USD" else 2,
                "status": "enabled",
            }
            for asset, altname in ASSETS.items()
        }
        return web.json_response({"error": [], "result": result})

    async def _asset_pairs(self, request: web.Request) -> web.Response:
        self._log(request)
        result = {
            pair_id: {
                "altname": altname,
                "wsname": f"{ASSETS[base]}/{ASSETS[quote]}",
                "aclass_base": "currency",
                "base": base,
                "aclass_quote": "currency",
                "quote": quote,
                "lot": "unit",
                "cost_decimals": 5,
                "pair_decimals": PRICE_DECIMALS,
                "lot_decimals": LOT_DECIMALS,
                "lot_multiplier": 1,
                "leverage_buy": [],
                "leverage_sell": [],
                "fees": [[0, 0.4]],
                "fees_maker": [[0, 0.25]],
                "fee_volume_currency": "ZUSD",
                "margin_call": 80,
                "margin_stop": 40,
                "ordermin": "0.0001",
                "costmin": "0.5",
                "tick_size": "0.1",
                "status": "online",
            }
            for pair_id, altname, base, quote in PAIRS.values()
        }
        return web.json_response({"error": [], "result": result})

    async def _trades(self, request: web.Request) -> web.Response:
        market = self._market(request)
        if market is None:
            return self._error("EQuery:Unknown asset pair")
        since = int(request.query.get("since", 0))
        since_ns = since if since >= 10**15 else since * 1_000_000_000
        count = min(int(request.query.get("count", 1000)), 1000)
        trades = [t for t in self.published_tape(market) if t.time * 1_000_000 > since_ns][:count]
        rows = []
        for t in trades:
            row = [t.price, t.qty, t.time / 1000, t.side[0], "m", "", t.id]
            rows.append(row if self.trade_ids else row[:6])
        last = str(trades[-1].time * 1_000_000) if trades else str(since_ns)
        pair_id = PAIRS[market][0]
        return web.json_response({"error": [], "result": {pair_id: rows, "last": last}})

    async def _ohlc(self, request: web.Request) -> web.Response:
        market = self._market(request)
        if market is None:
            return self._error("EQuery:Unknown asset pair")
        if request.query.get("interval", "1") != "1":
            return self._error("EGeneral:Invalid arguments")
        since_ms = int(request.query.get("since", 0)) * 1000
        buckets = minute_buckets(self.published_tape(market), since_ms + 1, 2**62)
        rows = []
        for minute in sorted(buckets)[-720:]:
            ts = buckets[minute]
            prices = [float(t.price) for t in ts]
            volume = sum(float(t.qty) for t in ts)
            vwap = sum(float(t.qty) * float(t.price) for t in ts) / volume
            rows.append(
                [
                    minute // 1000,
                    ts[0].price,
                    f"{max(prices):.1f}",
                    f"{min(prices):.1f}",
                    ts[-1].price,
                    f"{vwap:.1f}",
                    f"{volume:.8f}",
                    len(ts),
                ]
            )
        last = rows[-1][0] if rows else since_ms // 1000
        pair_id = PAIRS[market][0]
        return web.json_response({"error": [], "result": {pair_id: rows, "last": last}})


def _level(price: str, qty: str) -> dict:
    return {"price": float(price), "qty": float(qty)}


def _now_ms() -> int:
    return int(time.time() * 1000)
