"""Books over the stream end to end: the consolidated view across venues, and a client's
book kept from snapshot plus deltas (issue 12).

Real daphne, the real feed runner (``run_feeds``, every shard: the simulator and the
fake Binance, Coinbase and Kraken at the wire), real Redis and PostgreSQL, the
``websockets`` client.
"""

from __future__ import annotations

import asyncio
import json
import sys
from decimal import Decimal

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from django.conf import settings

from accounts.services.api_keys import api_key_create
from marketdata.models import Exchange, Instrument
from marketdata.streaming.store import state_key
from tests.e2e.stream_servers import (
    ClientBook,
    FeedProcess,
    Proc,
    Recorder,
    WebProcess,
    child_env,
    opened,
    running,
    subscribe,
)
from tests.marketdata.feeds.venue_adapters import venue_start
from tests.streaming.conftest import plan_grant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

BBO, CBOOK = "bbo.consolidated.BTC-USD", "book.consolidated.BTC-USD"
SIM_BOOK = "book.sim.BTC-USD"
MARKETS = (
    ("sim", "BTC/USD", "0.01"),
    ("coinbase", "BTC/USD", "0.01"),
    ("kraken", "BTC/USD", "0.1"),
    ("binance", "BTC/USDT", "0.01"),
)


def instruments(markets=MARKETS) -> None:
    """Exactly these instruments active (the runner streams only them)."""
    Instrument.objects.update(active=False)
    for exchange_id, symbol, tick in markets:
        exchange, _ = Exchange.objects.get_or_create(
            id=exchange_id, defaults={"name": exchange_id.title()}
        )
        base, quote = symbol.split("/")
        Instrument.objects.update_or_create(
            exchange=exchange,
            ccxt_symbol=symbol,
            defaults={
                "symbol": f"{base}-{quote}",
                "base": base,
                "quote": quote,
                "price_precision": Decimal(tick),
                "size_precision": Decimal("0.00000001"),
                "active": True,
                "feed_shard": 0 if exchange_id == "sim" else 1,
            },
        )


@pytest.fixture
def live_key(alice, acme) -> str:
    plan_grant(acme, code="live", ws_connections=20)
    return api_key_create(organization=acme, created_by=alice, name="live").raw_key


@pytest.fixture
def venues():
    started = {v: venue_start(v) for v in ("binance", "coinbase", "kraken")}
    try:
        yield started
    finally:
        for adapter in started.values():
            adapter.fake.stop()


def all_feeds(venues, logs=None, **env: str) -> Proc:
    """`run_feeds` for every shard, the real venues pointed at their fakes."""
    overrides = {v: a.fake.ccxt_urls() for v, a in venues.items()}
    args = [sys.executable, "manage.py", "run_feeds"]
    return Proc(
        args,
        env=child_env(SIM_SPEED="1", FEED_URL_OVERRIDES=json.dumps(overrides), **env),
        log=logs / "feeds.log" if logs else None,
    )


def latest(recorder: Recorder, channel: str) -> dict | None:
    frames = recorder.of(channel)
    return frames[-1]["data"] if frames else None


async def test_consolidated_bbo_follows_the_best_venue_and_drops_a_venue_that_stops(
    venues, live_key, tmp_path
):
    await asyncio.to_thread(instruments)
    coinbase, kraken = venues["coinbase"], venues["kraken"]
    web = WebProcess()
    feeds = all_feeds(venues, tmp_path, CONSOLIDATED_STALE_SECONDS="30")
    with running(web, feeds):
        client = Recorder(await opened(web.url, live_key, [BBO, CBOOK]))
        await client.until(
            lambda r: (latest(r, BBO) or {}).get("venues") == ["coinbase", "kraken"],
            60,
            "both venues in the consolidated BBO",
        )
        # Both fakes quote 63999 / 64001: a tie. Coinbase bids higher: it is the best bid.
        await asyncio.to_thread(
            coinbase.fake.emit_levels, "BTC-USD", [("bids", "64000.50", "0.70000000")]
        )
        await client.until(
            lambda r: (
                (latest(r, BBO) or {}).get("bid_venue") == "coinbase"
                and latest(r, BBO)["bid"] == 64000.5
            ),
            20,
            "coinbase as the best bid",
        )
        # Kraken offers lower: the best ask moves to it; then it outbids Coinbase too.
        await asyncio.to_thread(
            kraken.fake.emit_levels, "BTC/USD", [("asks", "64000.8", "1.50000000")]
        )
        await asyncio.to_thread(
            kraken.fake.emit_levels, "BTC/USD", [("bids", "64000.6", "0.20000000")]
        )
        await client.until(
            lambda r: (
                (latest(r, BBO) or {}).get("ask_venue") == "kraken"
                and latest(r, BBO)["bid_venue"] == "kraken"
            ),
            20,
            f"kraken as the best bid and ask: {latest(client, BBO)}",
        )
        bbo = latest(client, BBO)
        assert (bbo["bid"], bbo["ask"], bbo["ask_size"]) == (64000.6, 64000.8, 1.5)
        assert "binance" not in bbo["venues"]  # USDT is not USD: BTC-USDT is its own pair

        # The merged ladder, kept from snapshot and deltas, shows each venue's size.
        book = ClientBook()
        for frame in client.of(CBOOK):
            book.apply(frame)
        assert book.asks[64001.0] == pytest.approx(
            float(coinbase.fake.books["BTC-USD"].asks["64001.00"])
            + float(kraken.fake.books["BTC/USD"].asks["64001.0"])
        )

        # The same over REST.
        async with httpx.AsyncClient(
            base_url=web.http, headers={"Authorization": f"Bearer {live_key}"}
        ) as http:
            rest_bbo = (await http.get("/api/v1/markets/consolidated/BTC-USD/bbo")).json()
            rest_book = (await http.get("/api/v1/markets/consolidated/BTC-USD/book?depth=5")).json()
            unknown = await http.get("/api/v1/markets/consolidated/DOGE-EUR/bbo")
        assert (rest_bbo["bid_venue"], rest_bbo["bid"]) == ("kraken", 64000.6)
        assert rest_bbo["venues"] == ["coinbase", "kraken"]
        assert len(rest_book["asks"]) == 5
        assert rest_book["asks"][0] == [64000.8, 1.5, {"kraken": 1.5}]
        assert unknown.status_code == 404 and "error" in unknown.json()

        # Kraken's feed goes down: it drops out, and Coinbase is the best bid again.
        kraken.fake.stop()
        await client.until(
            lambda r: (latest(r, BBO) or {}).get("venues") == ["coinbase"],
            30,
            "kraken dropped from the consolidated BBO",
        )
        bbo = latest(client, BBO)
        assert (bbo["bid_venue"], bbo["bid"]) == ("coinbase", 64000.5)
        assert bbo["ask_venue"] == "coinbase"
        await client.stop()
        await client.ws.close()


async def test_a_client_book_from_snapshot_and_deltas_equals_the_servers_after_60_s(live_key):
    """60 s of the simulated market (at 4x), followed at depths 50 and 10: every delta's
    checksum matches the client's copy, and the end state equals the server's book."""
    await asyncio.to_thread(instruments, MARKETS[:1])
    web = WebProcess()
    feed = FeedProcess(SIM_SPEED="4")
    with running(web, feed):
        recorders = []
        for depth in (50, 10):
            ws = await opened(web.url, live_key)
            await subscribe(ws, [SIM_BOOK], depth=depth)
            recorders.append(Recorder(ws))
        full, top = recorders
        await asyncio.sleep(15)  # 60 s of market time
        feed.stop()  # its last message goes out; the stored state is then final
        store = aioredis.Redis.from_url(settings.REDIS_URL)
        try:
            state = await store.hgetall(state_key(SIM_BOOK))
        finally:
            await store.aclose()
        final_seq = int(state[b"seq"])
        for recorder in (full, top):
            await recorder.until(
                lambda r: r.of(SIM_BOOK) and r.of(SIM_BOOK)[-1]["seq"] == final_seq,
                15,
                f"seq {final_seq}",
            )
            await recorder.stop()
            await recorder.ws.close()
    server = orjson.loads(state[b"data"])
    for recorder, depth in ((full, 50), (top, 10)):
        frames = recorder.of(SIM_BOOK)
        assert frames[0]["type"] == "snapshot"
        assert len(frames) > 30  # a minute of a moving book
        assert [f["type"] for f in frames[1:]] == ["update"] * (len(frames) - 1)
        held = ClientBook.follow(frames)[final_seq]  # checks every delta's checksum
        bids, asks = held
        assert sorted(bids.items(), reverse=True) == [tuple(lv) for lv in server["bids"][:depth]]
        assert sorted(asks.items()) == [tuple(lv) for lv in server["asks"][:depth]]
        # The simulator quotes 25 levels a side: the depth-50 view holds them all.
        assert len(bids) == min(depth, len(server["bids"])) and len(server["bids"]) >= 20
