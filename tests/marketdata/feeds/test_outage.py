"""No trade lost to our own outage: PostgreSQL down for longer than the writer's buffer.

The real feed runner process (``manage.py run_feeds``) streams the fake Coinbase
into a private PostgreSQL with a 20-trade buffer. The test stops that server,
lets 100 trades print, starts it again, and expects the stored tape to equal the
venue's: the buffered trades are flushed, the dropped ones are backfilled from
REST through the range recorded in Redis.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.cache import cache

from marketdata.feeds.outage import dropped_ranges_get, dropped_ranges_record, ranges_merge
from tests.fakes.coinbase_server import FakeCoinbase
from tests.marketdata.feeds.private_postgres import PrivatePostgres

ROOT = Path(__file__).resolve().parents[3]
DATABASE = "qs_outage"
TAPE_SQL = """
    SELECT t.trade_id, t.price, t.size, t.side FROM marketdata_trade t
    JOIN marketdata_instrument i ON i.id = t.instrument_id
    WHERE i.exchange_id = 'coinbase' AND i.ccxt_symbol = 'BTC/USD'
    ORDER BY t.ts, t.id
"""


def _wait(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def postgres():
    if not PrivatePostgres.available():
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        server.create_database(DATABASE)
        yield server
    finally:
        server.remove()


def _env(postgres: PrivatePostgres, fake: FakeCoinbase) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": postgres.url(DATABASE),
        "DB_POOL": "0",
        "FEED_URL_OVERRIDES": json.dumps({"coinbase": fake.ccxt_urls()}),
        "FEED_WRITER_MAX_BUFFERED": "20",
        "PYTHONUNBUFFERED": "1",
    }


def test_trades_dropped_during_a_database_outage_are_backfilled(postgres, tmp_path):
    key = "md:dropped:coinbase:BTC/USD"
    cache.delete(key)
    with FakeCoinbase() as fake:
        env = _env(postgres, fake)
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput"], env=env, check=True, cwd=ROOT,
                       capture_output=True, timeout=300)  # fmt: skip
        log = (tmp_path / "run_feeds.log").open("w")
        runner = subprocess.Popen(
            [*manage, "run_feeds", "--exchange", "coinbase"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait(lambda: ("market_trades", "BTC-USD") in fake.subscriptions(), 60, "subscribe")
            for stored in (10, 20, 30):  # a burst over the 20-trade buffer would drop some
                fake.emit_trades("BTC-USD", 10)
                _wait(lambda n=stored: len(postgres.query(DATABASE, TAPE_SQL)) == n, 30,
                      f"first {stored} stored")  # fmt: skip
            assert not dropped_ranges_get(exchange="coinbase", symbol="BTC/USD")

            postgres.stop()
            for _ in range(5):  # 100 trades while the database is away; 20 fit the buffer
                fake.emit_trades("BTC-USD", 20)
                time.sleep(0.3)
            ranges = _wait(lambda: dropped_ranges_get(exchange="coinbase", symbol="BTC/USD"),
                           30, "the dropped range recorded in Redis")  # fmt: skip
            tape = fake.published_tape("BTC-USD")
            assert ranges[0][0] == tape[30].time  # the oldest buffered trades went first

            postgres.start()
            expected = [(str(t.id), float(t.price), float(t.qty), t.side) for t in tape]
            _wait(lambda: postgres.query(DATABASE, TAPE_SQL) == expected, 60, "the whole tape")
            _wait(lambda: not dropped_ranges_get(exchange="coinbase", symbol="BTC/USD"), 30,
                  "the repaired range forgotten")  # fmt: skip
        finally:
            runner.send_signal(signal.SIGTERM)
            try:
                runner.wait(30)
            except subprocess.TimeoutExpired:
                runner.kill()
                runner.wait(10)
            log.close()
            cache.delete(key)

    output = (tmp_path / "run_feeds.log").read_text()
    assert "dropped" in output and "dropped trades recovered" in output
    assert "/ticker" in " ".join(fake.requests)  # Coinbase's REST market trades


def test_recorded_ranges_merge_and_survive_in_redis():
    key = "md:dropped:kraken:ETH/USD"
    cache.delete(key)
    try:
        dropped_ranges_record(exchange="kraken", symbol="ETH/USD", ranges=[(10, 20)])
        dropped_ranges_record(exchange="kraken", symbol="ETH/USD", ranges=[(15, 30), (40, 50)])
        assert dropped_ranges_get(exchange="kraken", symbol="ETH/USD") == [(10, 30), (40, 50)]
    finally:
        cache.delete(key)
    assert ranges_merge([(5, 6), (1, 2), (2, 4)]) == [(1, 4), (5, 6)]
