"""The client against the real product: daphne, the sim feed runner, Postgres and Redis.

API keys are created by the product's own service; nothing here is faked.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from quantsaas_client import (
    AuthenticationFailed,
    Client,
    Gap,
    InvalidRequest,
    NotFound,
    Reconnecting,
    Snapshot,
    Stream,
    Update,
    Welcome,
)

from accounts.services.api_keys import api_key_create
from marketdata.models import Trade
from quantsaas.timeutil import ms_to_dt, now_ms
from tests.client.tcp_proxy import tcp_proxy
from tests.e2e.stream_servers import processes
from tests.e2e.test_backtest_worker import worker as worker  # the fixture, shared
from tests.streaming.conftest import plan_grant
from tests.streaming.conftest import sim_market as sim_market  # the fixture, shared

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

TRADES, BOOK = "trades.sim.BTC-USD", "book.sim.BTC-USD"
CLI = Path(sys.executable).with_name("quantsaas")


@pytest.fixture
def api_key(sim_market, alice, acme) -> str:
    plan_grant(acme, code="client-test", requests_per_minute=6000, ws_connections=5)
    # New keys read only unless given scopes; backtests need trade-analytics.
    scopes = ["read", "trade-analytics"]
    return api_key_create(organization=acme, created_by=alice, name="client", scopes=scopes).raw_key


def wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def cli(*args: str, key: str, base: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "QUANTSAAS_API_KEY": key, "QUANTSAAS_URL": base}
    return subprocess.run(
        [str(CLI), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_rest_pages_errors_options_and_the_command_line(api_key):
    start = now_ms() - 1000
    with processes() as (_, port):
        base = f"http://127.0.0.1:{port}"
        with Client(api_key, base_url=base) as client:
            wait_for(
                lambda: len(client.trades("sim", "BTC-USD", start=start).to_list()) >= 25,
                60,
                "25 stored trades",
            )
            end = now_ms()

            # Every page of the window, in order, once: the database's trades exactly.
            trades = client.trades("sim", "BTC/USD", start=start, end=end, page_size=7)
            ids = [t["id"] for t in trades]
            assert trades.pages_fetched >= 4
            stored = list(
                Trade.objects.filter(
                    instrument__symbol="BTC-USD", ts__gte=ms_to_dt(start), ts__lt=ms_to_dt(end)
                )
                .order_by("ts", "id")
                .values_list("trade_id", flat=True)
            )
            assert ids == stored and len(set(ids)) == len(ids)

            assert "sim" in [e["id"] for e in client.exchanges()]
            assert "BTC-USD" in [i["symbol"] for i in client.instruments("sim")]
            assert client.ticker("sim", "BTC-USD")["last"] > 0
            book = client.book("sim", "BTC-USD", depth=5)
            assert book["bids"][0][0] < book["asks"][0][0]
            assert any(k["name"] == "client" for k in client.api_keys())
            assert client.usage()["plan"]["code"] == "client-test"
            assert "/api/v1/markets/{exchange}/{symbol}/trades" in client.schema()["paths"]
            assert client.asyncapi()["channels"]["stream"]["address"] == "/ws/v1/stream"

            # docs/api.md's worked example, and implied volatility back from its price.
            priced = client.option_price(
                "call", spot=42, strike=40, expiry=0.5, volatility=0.2, rate=0.1
            )
            assert priced["price"] == pytest.approx(4.7594, abs=1e-4)
            assert priced["delta"] == pytest.approx(0.7791, abs=1e-4)
            iv = client.implied_volatility(
                "call", spot=42, strike=40, expiry=0.5, price=priced["price"], rate=0.1
            )
            assert iv == pytest.approx(0.2, abs=1e-6)
            rows = client.implied_volatilities(
                [{"type": "call", "spot": 42, "strike": 40, "expiry": 0.5, "price": 1.0}]
            )
            assert rows[0]["volatility"] is None and rows[0]["reason"] == "below_intrinsic"

            with pytest.raises(NotFound):
                client.ticker("sim", "NOPE-USD")
            with pytest.raises(InvalidRequest) as invalid:
                client.candles("sim", "BTC-USD", interval="7m").to_list()
            assert invalid.value.status == 400 and invalid.value.details
        with (
            Client("qs_not_a_real_key", base_url=base) as stranger,
            pytest.raises(AuthenticationFailed),
        ):
            stranger.usage()

        # The command line, as a customer runs it.
        out = cli("trades", "sim", "BTC-USD", "--since", "1h", "--csv", key=api_key, base=base)
        assert out.returncode == 0, out.stderr
        rows = list(csv.DictReader(io.StringIO(out.stdout)))
        assert len(rows) >= 25 and {"id", "ts", "price", "size", "side"} <= set(rows[0])
        out = cli(
            "price",
            "call",
            "--spot",
            "42",
            "--strike",
            "40",
            "--expiry",
            "0.5",
            "--vol",
            "0.2",
            "--rate",
            "0.1",
            key=api_key,
            base=base,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["price"] == pytest.approx(4.7594, abs=1e-4)
        out = cli("stream", TRADES, "--count", "3", key=api_key, base=base)
        assert out.returncode == 0, out.stderr
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        assert len(lines) == 3 and all(line["channel"] == TRADES for line in lines)
        assert [line["seq"] for line in lines] == list(range(lines[0]["seq"], lines[0]["seq"] + 3))
        out = cli("ticker", "sim", "NOPE-USD", key=api_key, base=base)
        assert out.returncode == 1 and "not_found" in out.stderr


async def test_stream_books_and_the_sync_wrapper(api_key):
    with processes() as (url, port):
        stream = Stream([TRADES, BOOK], api_key=api_key, url=url)
        events = []
        async with stream:
            async for event in stream:
                events.append(event)
                if sum(isinstance(e, Update) and e.channel == TRADES for e in events) >= 10:
                    break
        assert isinstance(events[0], Welcome) and events[0].plan == "client-test"
        snapshot = next(e for e in events if isinstance(e, Snapshot))
        assert snapshot.channel == BOOK and snapshot.book.best_bid[0] < snapshot.book.best_ask[0]
        seqs = [e.seq for e in events if isinstance(e, Update) and e.channel == TRADES]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert not [e for e in events if isinstance(e, Gap)]
        assert stream.books[BOOK].mid is not None

        client = Client(api_key, base_url=f"http://127.0.0.1:{port}")

        def read_sync() -> list[int]:
            got = []
            with client.stream_sync([TRADES]) as sync_stream:
                for event in sync_stream:
                    if isinstance(event, Update):
                        got.append(event.seq)
                        if len(got) == 3:
                            return got
            return got

        got = await asyncio.to_thread(read_sync)
        assert got == list(range(got[0], got[0] + 3))
        client.close()


async def test_resume_across_a_killed_connection_has_no_missing_or_duplicate_seq(api_key):
    with processes() as (_, port):
        async with tcp_proxy(port) as proxy:
            url = f"ws://127.0.0.1:{proxy.port}/ws/v1/stream"
            stream = Stream([TRADES], api_key=api_key, url=url)
            seqs: list[int] = []
            events = []
            cut_at = None
            async with stream:
                async for event in stream:
                    events.append(event)
                    if isinstance(event, Update):  # a merged frame covers from_seq..seq
                        seqs.extend(range(event.from_seq, event.seq + 1))
                    if cut_at is None and len(seqs) == 5:
                        cut_at = len(seqs)
                        proxy.cut()  # mid-stream; the network stays down for a while
                        await proxy.refuse_for(2.0)
                    if (
                        cut_at is not None
                        and len(seqs) >= cut_at + 10
                        and any(isinstance(e, Welcome) and e.reconnect for e in events)
                    ):
                        break
            assert any(isinstance(e, Reconnecting) for e in events)
            assert proxy.accepted >= 2
            assert not [e for e in events if isinstance(e, Gap)], events
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            # Trades were published while the connection was down, and still all arrived.
            assert stream.stats.reconnects >= 1 and len(seqs) >= 15


def test_a_backtest_is_submitted_polled_with_progress_and_its_result_read(api_key, worker):
    from marketdata.models import Instrument
    from tests.e2e.test_backtest_worker import _minute_candles

    instrument = Instrument.objects.get(exchange_id="sim", symbol="BTC-USD")
    first = _minute_candles(instrument, n=600, end_ms=now_ms() - now_ms() % 60_000)
    with (
        processes(feeds=False) as (_, port),
        Client(api_key, base_url=f"http://127.0.0.1:{port}") as client,
    ):
        polls = []
        done = client.run_backtest(
            exchange="sim",
            symbol="BTC-USD",
            strategy="momentum",
            interval="1m",
            start=first,
            params={"lookback": 1},
            poll=0.2,
            timeout=90,
            on_progress=polls.append,
        )
        assert done.status == "succeeded" and done.progress == 1.0
        assert polls[-1] is not None and polls[-1].status == "succeeded"
        assert isinstance(done.metrics["total_return"], float)
        assert done.result["equity"][0][1] == 1.0
        assert client.backtest(done.id).result == done.result
        assert done.id in [b["id"] for b in client.backtests()]


def test_ofi_vpin_and_volatility_from_the_live_sim_market_and_stored_candles(api_key):
    from marketdata.models import Instrument
    from tests.e2e.test_backtest_worker import _minute_candles

    instrument = Instrument.objects.get(exchange_id="sim", symbol="BTC-USD")
    candles_end = now_ms() - now_ms() % 60_000
    candles_start = _minute_candles(instrument, n=60, end_ms=candles_end)
    start = now_ms() - 1000
    with processes() as (_, port), Client(api_key, base_url=f"http://127.0.0.1:{port}") as client:
        # Realised volatility over the stored candles: one value a bar, null until the
        # window has filled, then positive; meta echoes what was asked.
        vol = client.volatility(
            "sim",
            "BTC-USD",
            estimator="parkinson",
            interval="1m",
            window=10,
            start=candles_start,
            end=candles_end,
            page_size=25,
        )
        rows = vol.to_list()
        assert vol.meta == {"estimator": "parkinson", "interval": "1m", "window": 10}
        assert vol.pages_fetched == 3
        assert [r["ts"] for r in rows] == list(range(candles_start, candles_end, 60_000))
        assert all(r["volatility"] is None for r in rows[:9])
        assert all(0 < r["volatility"] < 10 for r in rows[10:])

        # OFI of the sim's live book, one row per second with updates.
        ofi = wait_for(
            lambda: client.ofi("sim", "BTC-USD", interval="1s", start=start).to_list(),
            60,
            "OFI intervals",
        )
        assert all(r["interval_ms"] == 1000 and r["ts"] % 1000 == 0 for r in ofi)
        assert all(r["updates"] >= 1 and isinstance(r["ofi"], float) for r in ofi)

        # VPIN over the sim's trades, in buckets of an eighth of the volume so far.
        trades = wait_for(
            lambda: (
                len(got := client.trades("sim", "BTC-USD", start=start).to_list()) >= 30 and got
            ),
            60,
            "30 trades",
        )
        bucket = round(sum(t["size"] for t in trades) / 8, 6)
        vpin = client.vpin("sim", "BTC-USD", bucket_volume=bucket, window=2, start=start)
        buckets = vpin.to_list()
        assert (vpin.meta["bucket_volume"], vpin.meta["window"]) == (bucket, 2)
        assert vpin.meta["source"] == "trades"
        assert len(buckets) >= 4
        assert buckets[0]["vpin"] is None
        # A fraction of the volume, up to float rounding (all of it in a minute bar: 0 or 1).
        assert all(-1e-9 <= b["vpin"] <= 1 + 1e-9 for b in buckets[1:])
        assert all(
            b["buy_volume"] + b["sell_volume"] == pytest.approx(bucket, rel=1e-6) for b in buckets
        )
