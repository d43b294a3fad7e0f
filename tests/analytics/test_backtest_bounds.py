"""Backtests are bounded: O(n) rolling statistics, a per-plan cap on bars, and a CPU-time and
memory limit on the process that runs each job (issue 13)."""

from __future__ import annotations

import signal
import subprocess
import sys
import tracemalloc
from datetime import timedelta

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from numpy.lib.stride_tricks import sliding_window_view

from analytics.backtest import _rolling_mean, _rolling_std, backtest, mean_reversion
from analytics.backtest_process import BacktestLimitExceeded, backtest_in_child
from analytics.models import Backtest
from quantsaas.timeutil import now_ms
from tests.factories import plan_grant, plan_override_with

BACKTESTS = "/api/v1/backtests"


def _prices(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    close = 60_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    close[100:140] = close[100]  # a flat stretch: its spread is exactly zero
    return close


# --- rolling statistics -------------------------------------------------------------------
@pytest.mark.parametrize("window", [2, 3, 7, 20, 999])
def test_rolling_statistics_equal_the_definition(window):
    close = _prices(5_000)
    windows = sliding_window_view(close, window)

    mean, std = _rolling_mean(close, window), _rolling_std(close, window)

    assert np.isnan(mean[: window - 1]).all() and np.isnan(std[: window - 1]).all()
    np.testing.assert_allclose(mean[window - 1 :], windows.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(std[window - 1 :], windows.std(axis=1, ddof=1), rtol=1e-6, atol=1e-9)
    flat = windows.max(axis=1) == windows.min(axis=1)
    assert (std[window - 1 :][flat] == 0).all()  # exactly, so no made-up z-scores


def test_rolling_statistics_allocate_linear_memory_in_the_window():
    n, window = 20_000, 2_000  # n x window doubles would be 320 MB
    close = _prices(n)

    tracemalloc.start()
    try:
        mean_reversion(close, window=window)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 30 * n * 8  # a few arrays of n doubles, not n x window


def test_a_long_window_over_many_bars_runs():
    close = _prices(200_000)
    ts = np.arange(close.size, dtype=np.int64) * 60_000

    result = backtest("mean_reversion", ts, close, interval_ms=60_000, params={"window": 10_000})

    assert result.metrics["bars"] == close.size - 1


# --- limits on the job's process ---------------------------------------------------------
def _limited(code: str) -> subprocess.CompletedProcess:
    script = (
        "from analytics.backtest_process import limits_apply\n"
        "limits_apply(cpu_seconds=1, memory_mb=64)\n" + code
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_the_cpu_limit_stops_a_spinning_job():
    done = _limited("while True:\n    pass\n")

    assert done.returncode in (-signal.SIGXCPU, -signal.SIGKILL)


def test_the_memory_limit_refuses_a_large_allocation():
    done = _limited("import numpy\nnumpy.ones(512 * 1024 * 1024 // 8)\n")

    assert done.returncode == 1 and b"MemoryError" in done.stderr


def test_a_job_over_its_memory_budget_fails_with_a_reason_and_the_caller_survives():
    close = _prices(400_000)
    ts = np.arange(close.size, dtype=np.int64) * 60_000
    beats = []

    with pytest.raises(BacktestLimitExceeded, match="memory"):
        backtest_in_child(
            strategy="mean_reversion",
            ts=ts,
            close=close,
            options={"interval_ms": 60_000, "params": {"window": 50}},
            cpu_seconds=30,
            memory_mb=1,
            heartbeat=lambda: beats.append(1),
            heartbeat_seconds=0.05,
        )


def test_a_job_in_a_child_gives_the_library_answer():
    close = _prices(3_000)
    ts = np.arange(close.size, dtype=np.int64) * 60_000
    options = {"interval_ms": 60_000, "params": {"window": 30}, "fee_bp": 2.0}

    answer = backtest_in_child(
        strategy="mean_reversion",
        ts=ts,
        close=close,
        options=options,
        cpu_seconds=30,
        memory_mb=256,
        heartbeat=lambda: None,
        heartbeat_seconds=1,
    )

    expected = backtest("mean_reversion", ts, close, **options)
    assert answer["metrics"]["total_return"] == pytest.approx(expected.metrics["total_return"])
    assert answer["equity"][-1] == [int(expected.ts_ms[-1]), float(expected.equity[-1])]


def test_a_job_the_library_refuses_is_a_value_error():
    with pytest.raises(ValueError, match="window"):
        backtest_in_child(
            strategy="mean_reversion",
            ts=np.arange(10, dtype=np.int64),
            close=np.ones(10),
            options={"interval_ms": 60_000, "params": {"window": 1}},
            cpu_seconds=30,
            memory_mb=256,
            heartbeat=lambda: None,
            heartbeat_seconds=1,
        )


# --- the per-plan cap, at submission -------------------------------------------------------
def _submit(client, *, start: int, end: int, interval: str = "1m"):
    return client.post(
        BACKTESTS,
        {
            "exchange": "sim",
            "symbol": "BTC-USD",
            "interval": interval,
            "start": start,
            "end": end,
            "strategy": "mean_reversion",
            "params": {"window": 10_000},
        },
        format="json",
    )


def test_more_bars_than_the_plan_runs_per_job_is_400_and_not_queued(alice_client, acme):
    plan_grant(organization=acme, code="pro")  # a year of history; 500,000 bars a job
    end = now_ms() - 3_600_000
    start = end - 360 * 86_400_000  # 518,400 one-minute bars

    response = _submit(alice_client, start=start, end=end)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid" and "500,000" in error["details"]["fields"]["start"]
    assert not Backtest.objects.exists()  # nothing queued, nothing charged
    # The same range at a longer interval fits.
    assert _submit(alice_client, start=start, end=end, interval="1h").status_code == 202


def test_a_plan_without_its_own_cap_gets_the_free_one(alice_client, acme):
    plan_override_with(organization=acme, history_days=None, backtests_per_day=5)
    end = now_ms() - 3_600_000

    fits = _submit(alice_client, start=end - 20_000 * 60_000, end=end)
    too_many = _submit(alice_client, start=end - 20_001 * 60_000, end=end)

    assert fits.status_code == 202, fits.content
    assert too_many.status_code == 400 and "20,000" in too_many.content.decode()


# --- jobs whose worker died ---------------------------------------------------------------
def test_a_silent_running_job_is_failed_on_read_and_not_charged(alice_client, acme, settings):
    plan_override_with(organization=acme, backtests_per_day=1)
    settings.BACKTEST_STALE_SECONDS = 60
    long_ago = timezone.now() - timedelta(minutes=5)
    beating = Backtest.objects.create(
        organization=acme,
        strategy="momentum",
        status=Backtest.Status.RUNNING,
        started_at=long_ago,
        heartbeat_at=timezone.now(),
    )
    silent = Backtest.objects.create(  # from before heartbeats: judged by its start
        organization=acme, strategy="momentum", status=Backtest.Status.RUNNING, started_at=long_ago
    )

    body = alice_client.get(f"{BACKTESTS}/{silent.pk}").json()

    assert body["status"] == "failed" and "worker" in body["error"]
    beating.refresh_from_db()
    assert beating.status == Backtest.Status.RUNNING
    silent.refresh_from_db()
    assert not silent.charged
