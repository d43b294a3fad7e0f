"""A real Celery worker runs a backtest submitted over the API.

The worker is `celery -A quantsaas worker` in a subprocess, on the test database and the
test Redis (broker), exactly as production runs it; the test only talks HTTP to the API
and polls the job until the worker has finished it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.db import connection

from analytics.services import BAR_CAPS
from marketdata.models import Candle1m, Instrument
from quantsaas.timeutil import ms_to_dt, now_ms
from tests.factories import plan_grant, plan_override_with

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker():
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),  # the test database, which this test commits to
        "REDIS_URL": os.environ["REDIS_URL"],
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "quantsaas",
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # warm shutdown of the worker we started
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_a_real_worker_runs_a_backtest_submitted_over_the_api(worker, alice_client, acme):
    plan_grant(organization=acme)  # real time: the free plan's delay would cut off the candles
    instrument = Instrument.objects.get(exchange_id="sim", symbol="BTC-USD")
    n = 120
    first = now_ms() - (n + 5) * 60_000
    first -= first % 60_000
    Candle1m.objects.bulk_create(
        Candle1m(
            instrument=instrument,
            ts=ms_to_dt(first + i * 60_000),
            open=100 * 1.002**i,
            high=100 * 1.002**i,
            low=100 * 1.002**i,
            close=100 * 1.002**i,
            volume=1.0,
            trade_count=1,
            is_final=True,
        )
        for i in range(n)
    )

    response = alice_client.post(
        "/api/v1/backtests",
        {
            "exchange": "sim",
            "symbol": "BTC-USD",
            "interval": "1m",
            "start": first,
            "strategy": "momentum",
            "params": {"lookback": 1},
        },
        format="json",
    )
    assert response.status_code == 202, response.content

    deadline = time.monotonic() + 60
    job = response.json()
    while job["status"] in ("queued", "running") and time.monotonic() < deadline:
        assert worker.poll() is None, worker.stdout.read()
        time.sleep(0.2)
        job = alice_client.get(response["Location"]).json()

    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0 and job["started_at"] <= job["finished_at"]
    # Long from the second bar on, no costs: 0.2 % a bar over n - 2 bars.
    assert job["result"]["metrics"]["total_return"] == pytest.approx(1.002 ** (n - 2) - 1)


def _minute_candles(instrument: Instrument, *, n: int, end_ms: int) -> int:
    """n one-minute candles ending at end_ms, written by the database itself (fast enough
    for a job that takes the worker a few seconds); returns the first one's time."""
    first = end_ms - n * 60_000
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Candle1m._meta.db_table}
                (instrument_id, ts, open, high, low, close, volume, buy_volume, trade_count,
                 is_final)
            SELECT %s, to_timestamp((%s::bigint + i::bigint * 60000) / 1000.0),
                   100 + sin(i / 50.0), 101 + sin(i / 50.0), 99 + sin(i / 50.0),
                   100 + sin(i / 50.0), 1, 0.5, 1, true
            FROM generate_series(0, %s - 1) AS i
            """,  # noqa: S608 - the table name is the model's, the values are parameters
            [instrument.pk, first, n],
        )
    return first


def test_a_job_whose_worker_dies_is_failed_and_not_charged(
    worker, alice_client, acme, settings, monkeypatch
):
    plan_override_with(
        organization=acme, history_days=None, stream_delay_seconds=0, backtests_per_day=1
    )
    # A job long enough (a few seconds of the worker's time) to be killed in the middle.
    monkeypatch.setitem(BAR_CAPS, "free", 200_000)  # the cap is checked in this process
    settings.BACKTEST_STALE_SECONDS = 2  # so is the heartbeat
    instrument = Instrument.objects.get(exchange_id="sim", symbol="BTC-USD")
    end = now_ms() - 120_000
    end -= end % 60_000
    first = _minute_candles(instrument, n=200_000, end_ms=end)
    request = {
        "exchange": "sim",
        "symbol": "BTC-USD",
        "interval": "1m",
        "start": first,
        "end": end,
        "strategy": "mean_reversion",
        "params": {"window": 500},
    }
    response = alice_client.post("/api/v1/backtests", request, format="json")
    assert response.status_code == 202, response.content

    deadline = time.monotonic() + 60
    job = response.json()
    while job["status"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.02)
        job = alice_client.get(response["Location"]).json()
    assert job["status"] == "running", job
    time.sleep(0.3)
    assert alice_client.get(response["Location"]).json()["status"] == "running"
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and the job's process, mid-job
    worker.wait()

    deadline = time.monotonic() + 30
    while job["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
        job = alice_client.get(response["Location"]).json()

    assert job["status"] == "failed", job
    assert "worker" in job["error"] and job["finished_at"] is not None
    # Not charged: the plan's one backtest a day is still there.
    again = alice_client.post("/api/v1/backtests", request, format="json")
    assert again.status_code == 202, again.content
