"""The backtest library: known answers, no look-ahead, costs, and the metrics' definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analytics.backtest import MS_PER_YEAR, backtest, mean_reversion, sma_crossover

HOUR = 3_600_000


def _ts(n: int, step: int = HOUR) -> np.ndarray:
    return np.arange(n, dtype=np.int64) * step


def test_momentum_on_a_steady_rise_earns_the_rise_after_its_first_signal_minus_one_cost():
    """Closes grow 1 % a bar. Momentum(1) first sees the rise at close 1, so it is long
    from bar 2 on: equity = 1.01^(n-2) less one entry cost of 10 bp."""
    n = 50
    close = 100 * 1.01 ** np.arange(n)

    result = backtest(
        "momentum", _ts(n), close, interval_ms=HOUR, params={"lookback": 1}, fee_bp=7, slippage_bp=3
    )

    assert result.position[0] == 0 and np.all(result.position[1:] == 1)
    expected_returns = np.r_[0.0, -0.001 + 0.01, np.full(n - 3, 0.01)]
    np.testing.assert_allclose(result.returns, expected_returns, rtol=0, atol=1e-14)
    total = (1 + 0.01 - 0.001) * 1.01 ** (n - 3) - 1
    assert result.metrics["total_return"] == pytest.approx(total, rel=1e-12)
    assert result.metrics["trades"] == 1
    assert result.metrics["turnover"] == 1.0
    assert result.metrics["max_drawdown"] == 0.0
    assert result.metrics["max_drawdown_duration_ms"] == 0


def test_sma_crossover_known_answer_on_a_small_tape():
    """Hand-computed: fast=2, slow=3 on 10, 11, 12, 11, 10, 11, 13.

    SMA2: -, 10.5, 11.5, 11.5, 10.5, 10.5, 12;  SMA3: -, -, 11, 11.33, 11, 10.67, 11.33.
    Targets: 0, 0, +1, +1, -1, -1, +1. Held over bars 1..6 (one bar later): 0, 0, +1, +1, -1, -1.
    """
    close = np.array([10, 11, 12, 11, 10, 11, 13], dtype=float)

    result = backtest(
        "sma_crossover", _ts(7), close, interval_ms=HOUR, params={"fast": 2, "slow": 3}
    )

    np.testing.assert_array_equal(result.position, [0, 0, 1, 1, -1, -1])
    bar = close[1:] / close[:-1] - 1
    expected = np.array([0, 0, bar[2], bar[3], -bar[4], -bar[5]])
    np.testing.assert_allclose(result.returns, expected, rtol=1e-15)
    # 12 -> 11 and 11 -> 10 long, then 10 -> 11 and 11 -> 13 short: all four lose.
    equity = (1 - 1 / 12) * (1 - 1 / 11) * (1 - 1 / 10) * (1 - 2 / 11)
    assert result.equity[-1] == pytest.approx(equity, rel=1e-14)
    assert result.metrics["trades"] == 2  # into long, then flipped to short
    assert result.metrics["turnover"] == 3.0


def test_a_signal_never_earns_the_return_of_the_bar_that_produced_it():
    """Look-ahead check: change only the last close; every position stays the same."""
    rng = np.random.default_rng(7)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 300)))
    shocked = close.copy()
    shocked[-1] *= 1.5

    for name, params in [
        ("sma_crossover", {"fast": 5, "slow": 20}),
        ("momentum", {"lookback": 10}),
        ("mean_reversion", {"window": 20}),
    ]:
        a = backtest(name, _ts(300), close, interval_ms=HOUR, params=params)
        b = backtest(name, _ts(300), shocked, interval_ms=HOUR, params=params)
        np.testing.assert_array_equal(a.position, b.position)


def test_costs_are_charged_per_unit_of_position_change():
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 500)))
    free = backtest("momentum", _ts(500), close, interval_ms=HOUR, params={"lookback": 3})
    costly = backtest(
        "momentum",
        _ts(500),
        close,
        interval_ms=HOUR,
        params={"lookback": 3},
        fee_bp=4,
        slippage_bp=1,
    )

    traded = np.abs(np.diff(np.r_[0.0, free.position]))
    np.testing.assert_allclose(free.returns - costly.returns, 5e-4 * traded, atol=1e-15)
    assert costly.metrics["turnover"] == pytest.approx(traded.sum())


def test_long_only_never_goes_short():
    rng = np.random.default_rng(5)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 400)))
    result = backtest(
        "mean_reversion",
        _ts(400),
        close,
        interval_ms=HOUR,
        params={"window": 10, "entry_z": 1.0, "exit_z": 0.2},
        allow_short=False,
    )
    assert result.position.min() >= 0 and result.position.max() == 1


def test_mean_reversion_holds_between_exit_and_entry_bands():
    close = np.array([10, 10.1, 9.9, 10, 10.05, 9.95, 10, 12, 11.5, 11, 10.5, 10.2, 10, 10.1])
    z_target = mean_reversion(close, window=5, entry_z=1.5, exit_z=0.3)
    # The jump to 12 goes far above the mean: short from there until |z| falls under 0.3.
    assert z_target[7] == -1
    first_exit = np.flatnonzero(z_target[8:] == 0)
    assert first_exit.size and np.all(z_target[7 : 8 + first_exit[0]] == -1)


def test_metrics_follow_their_definitions():
    rng = np.random.default_rng(11)
    n = 24 * 90
    close = 100 * np.exp(np.cumsum(rng.normal(0.0002, 0.01, n)))
    r = backtest(
        "sma_crossover", _ts(n), close, interval_ms=HOUR, params={"fast": 12, "slow": 48}, fee_bp=2
    )
    m = r.metrics
    per_year = MS_PER_YEAR / HOUR
    years = (n - 1) * HOUR / MS_PER_YEAR

    assert m["total_return"] == pytest.approx(np.prod(1 + r.returns) - 1, rel=1e-10)
    assert m["cagr"] == pytest.approx((1 + m["total_return"]) ** (1 / years) - 1, rel=1e-10)
    sd = np.std(r.returns, ddof=1)
    assert m["annualized_volatility"] == pytest.approx(sd * math.sqrt(per_year))
    assert m["sharpe"] == pytest.approx(r.returns.mean() / sd * math.sqrt(per_year))
    downside = math.sqrt(np.mean(np.minimum(r.returns, 0) ** 2))
    assert m["sortino"] == pytest.approx(r.returns.mean() / downside * math.sqrt(per_year))
    curve = np.r_[1.0, r.equity]
    assert m["max_drawdown"] == pytest.approx(np.max(1 - curve / np.maximum.accumulate(curve)))
    assert m["bars"] == n - 1


def test_drawdown_duration_runs_from_the_peak_to_the_recovery():
    """Compared with a brute-force walk over the equity curve of a choppy tape."""
    close = np.array([100, 110, 100, 95, 105, 120, 118, 119, 125, 90, 91], dtype=float)
    result = backtest("momentum", _ts(11), close, interval_ms=HOUR, params={"lookback": 1})
    curve = np.r_[1.0, result.equity]
    times = np.r_[0, result.ts_ms]
    # Brute force: the longest time from a peak to the first point back at or above it.
    longest = 0
    for i in range(curve.size):
        if curve[i] < np.max(curve[: i + 1]):
            continue
        j = i + 1
        while j < curve.size and curve[j] < curve[i]:
            j += 1
        end = times[min(j, curve.size - 1)]
        if j > i + 1:
            longest = max(longest, end - times[i])
    assert result.metrics["max_drawdown_duration_ms"] == longest


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        backtest("martingale", _ts(3), [1, 2, 3], interval_ms=HOUR)
    with pytest.raises(ValueError):
        backtest("momentum", _ts(3), [1, -2, 3], interval_ms=HOUR)
    with pytest.raises(ValueError):
        sma_crossover(np.ones(5), fast=3, slow=3)
