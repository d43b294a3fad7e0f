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

from marketdata.models import Candle1m, Instrument
from quantsaas.timeutil import ms_to_dt, now_ms
from tests.factories import plan_grant

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
