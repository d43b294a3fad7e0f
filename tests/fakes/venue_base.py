"""What the Coinbase and Kraken fakes share: a deterministic tape and a threaded aiohttp server.

A fake owns one event loop in a background thread, so sync and async tests can
drive it; every control method is thread-safe. Nothing reaches a client until a
test emits it, so what a client missed is exactly known. The wire formats live
in the venue modules; this base knows nothing about them.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

BOOK_LEVELS = 25


@dataclass(frozen=True)
class TapeTrade:
    id: int
    symbol: str  # the venue's own market id
    price: str
    qty: str
    time: int  # milliseconds
    side: str  # the aggressor: "buy" or "sell"


def venue_tape(
    *, symbol: str, price: float, count: int, start_ms: int, seed: int, decimals: int = 2
) -> list[TapeTrade]:
    """A deterministic tape: same seed, same trades. Some trades share a millisecond."""
    rng = random.Random(f"{seed}:{symbol}")
    ts = start_ms
    tape = []
    for i in range(count):
        price = max(0.01, price * (1 + rng.gauss(0, 0.0004)))
        ts += rng.choice((0, 1, 37, 120, 400))
        tape.append(
            TapeTrade(
                id=500_001 + i,
                symbol=symbol,
                price=f"{price:.{decimals}f}",
                qty=f"{rng.uniform(0.0001, 0.5):.8f}",
                time=ts,
                side="sell" if rng.random() < 0.5 else "buy",
            )
        )
    return tape


@dataclass
class FakeBook:
    """A price-keyed L2 book; prices and sizes are the venue's formatted strings."""

    bids: dict[str, str] = field(default_factory=dict)
    asks: dict[str, str] = field(default_factory=dict)

    def top(self, side: str, n: int) -> list[tuple[str, str]]:
        levels = self.bids if side == "bids" else self.asks
        return sorted(levels.items(), key=lambda kv: float(kv[0]), reverse=side == "bids")[:n]


class ThreadedFake:
    """An aiohttp server on 127.0.0.1 (a free port) on its own loop in a thread.

    Subclasses add their routes and track their websockets in ``_sockets``;
    every control method here is thread-safe.
    """

    name = "fake"
    ws_path = "/ws"

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.accepting = True
        self.connections = 0
        self._sockets: dict[web.WebSocketResponse, set] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start_app())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name=f"fake-{self.name}", daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is None:
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self._loop = None

    async def _start_app(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)  # the OS picks a free port
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        await self._close_sockets()
        await self._runner.cleanup()

    def _call(self, coro, timeout: float = 10.0):
        """Run a coroutine on the server loop from any thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.ws_path}"

    async def _ws_open(self, request: web.Request) -> web.WebSocketResponse | None:
        """Accept a websocket (None while refusing connections, as in maintenance)."""
        if not self.accepting:
            return None
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections += 1
        self._sockets[ws] = set()
        return ws

    def drop_connections(self, *, refuse_reconnects: bool = False) -> None:
        """Cut every websocket as a network failure would; optionally refuse new ones."""
        self.accepting = not refuse_reconnects
        self._call(self._close_sockets())

    def accept_connections(self) -> None:
        self.accepting = True

    async def _close_sockets(self) -> None:
        sockets = list(self._sockets)
        self._sockets.clear()
        for ws in sockets:
            await ws.close(code=1001, message=b"going away")

    def _log(self, request: web.Request) -> None:
        self.requests.append(f"{request.path}?{request.query_string}")


class FakeVenue(ThreadedFake):
    """The tape, books and websocket fan-out the Coinbase and Kraken fakes share."""

    markets: dict[str, tuple[str, str, float, int]] = {}  # id -> (base, quote, price, decimals)

    def __init__(self, *, tape_length: int = 5000, seed: int = 11, start_ms: int | None = None):
        super().__init__()
        start = start_ms if start_ms is not None else int(time.time() * 1000) - 3_600_000
        self.tapes = {
            market: venue_tape(
                symbol=market, price=price, count=tape_length, start_ms=start, seed=seed, decimals=d
            )
            for market, (_, _, price, d) in self.markets.items()
        }
        self.published: dict[str, int] = dict.fromkeys(self.markets, 0)
        self.rng = random.Random(seed)
        self.books = {market: self._initial_book(market) for market in self.markets}
        self.book_snapshots = 0  # book snapshots sent (one per book subscription)

    # --- test controls --------------------------------------------------------------------
    def published_tape(self, market: str) -> list[TapeTrade]:
        return self.tapes[market][: self.published[market]]

    def subscriptions(self) -> set[tuple[str, str]]:
        """(channel, market) pairs some open websocket is subscribed to."""
        return set().union(*self._sockets.values()) if self._sockets else set()

    def emit_trades(self, market: str, count: int) -> list[TapeTrade]:
        """Publish the next `count` tape trades (to REST, and to subscribers still connected)."""
        return self._call(self._emit_trades(market, count))

    def emit_book(self, market: str, count: int = 1) -> None:
        self._call(self._emit_book(market, count))

    def emit_ticker(self, market: str) -> None:
        self._call(self._emit_ticker(market))

    def emit_levels(self, market: str, changes: list[tuple[str, str, str]]) -> None:
        """Publish exactly these level changes, (side, price, size) with size "0" removing
        the level, as one book update on the venue's wire (a test moving the price)."""
        self._forced_changes = list(changes)
        self._call(self._emit_book(market, 1))

    # --- shared mechanics -----------------------------------------------------------------
    def _initial_book(self, market: str) -> FakeBook:
        _, _, mid, decimals = self.markets[market]
        book = FakeBook()
        for i in range(1, BOOK_LEVELS + 1):
            book.bids[f"{mid - i:.{decimals}f}"] = f"{0.1 * i:.8f}"
            book.asks[f"{mid + i:.{decimals}f}"] = f"{0.1 * i:.8f}"
        return book

    def _book_changes(self, market: str) -> list[tuple[str, str, str]]:
        """Random level changes applied to the fake's book: (side, price, new size)."""
        book = self.books[market]
        forced, self._forced_changes = getattr(self, "_forced_changes", None), None
        if forced:
            for side, price, qty in forced:
                levels = getattr(book, side)
                if qty == "0":
                    levels.pop(price, None)
                else:
                    levels[price] = qty
            return forced
        changes = []
        for _ in range(self.rng.randint(1, 3)):
            side = "bids" if self.rng.random() < 0.5 else "asks"
            levels = getattr(book, side)
            price = self.rng.choice(sorted(levels))
            if self.rng.random() < 0.1 and len(levels) > 12:
                levels.pop(price)
                changes.append((side, price, "0"))
            else:
                qty = f"{self.rng.uniform(0.01, 3):.8f}"
                levels[price] = qty
                changes.append((side, price, qty))
        return changes

    def _stats(self, market: str) -> dict:
        trades = self.published_tape(market) or self.tapes[market][:1]
        prices = [float(t.price) for t in trades]
        book = self.books[market]
        (bid, bid_qty), (ask, ask_qty) = book.top("bids", 1)[0], book.top("asks", 1)[0]
        return {
            "open": float(trades[0].price),
            "last": trades[-1],
            "high": max(prices),
            "low": min(prices),
            "volume": sum(float(t.qty) for t in trades),
            "vwap": sum(float(t.qty) * float(t.price) for t in trades)
            / sum(float(t.qty) for t in trades),
            "bid": (bid, bid_qty),
            "ask": (ask, ask_qty),
        }

    async def _emit_trades(self, market: str, count: int) -> list[TapeTrade]:
        start = self.published[market]
        batch = self.tapes[market][start : start + count]
        self.published[market] = start + len(batch)
        await self.trades_out(market, batch)
        return batch

    async def trades_out(self, market: str, batch: list[TapeTrade]) -> None:
        raise NotImplementedError

    async def _emit_book(self, market: str, count: int) -> None:
        raise NotImplementedError

    async def _emit_ticker(self, market: str) -> None:
        raise NotImplementedError

    def _subscribers(self, channel: str, market: str) -> list[web.WebSocketResponse]:
        return [ws for ws, subs in list(self._sockets.items()) if (channel, market) in subs]

    async def _send(self, ws: web.WebSocketResponse, text: str) -> None:
        try:
            await ws.send_str(text)
        except ConnectionError:
            self._sockets.pop(ws, None)


def minute_buckets(trades: list[TapeTrade], start: int, end: int) -> dict[int, list[TapeTrade]]:
    """Trades grouped by the minute they fall in, for minutes in [start, end]."""
    buckets: dict[int, list[TapeTrade]] = {}
    for t in trades:
        minute = t.time - t.time % 60_000
        if start <= minute <= end:
            buckets.setdefault(minute, []).append(t)
    return buckets


def iso_ms(ms: int, digits: int = 6) -> str:
    """RFC 3339 UTC with `digits` fractional digits, as both venues print times."""
    seconds, millis = divmod(ms, 1000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{millis:03d}".ljust(digits, "0")
    return f"{stamp}.{fraction}Z"
