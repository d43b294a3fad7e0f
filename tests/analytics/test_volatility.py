"""Realised-volatility estimators: near the true sigma on simulated paths, and formula checks."""

import math

import numpy as np
import pytest

from analytics import volatility as vol

MINUTE = 60_000


def _gbm_candles(sigma, bars, steps, interval_ms, seed, drift=0.0):
    """OHLC of a geometric Brownian motion observed ``steps`` times within each bar."""
    rng = np.random.default_rng(seed)
    dt = interval_ms / vol.MS_PER_YEAR / steps
    increments = (drift - 0.5 * sigma**2) * dt + sigma * math.sqrt(dt) * rng.standard_normal(
        (bars, steps)
    )
    log_path = np.cumsum(increments.ravel()).reshape(bars, steps)
    previous = np.concatenate(([0.0], log_path[:-1, -1]))
    inside = np.column_stack((previous, log_path))
    price = 100 * np.exp(inside)
    return price[:, 0], price.max(axis=1), price.min(axis=1), price[:, -1]


@pytest.mark.parametrize("estimator", sorted(vol.ESTIMATORS))
def test_each_estimator_recovers_the_volatility_of_a_simulated_path(estimator):
    sigma = 0.6
    candles = _gbm_candles(sigma, bars=4000, steps=400, interval_ms=MINUTE, seed=3)
    estimate = vol.realized_volatility(estimator, *candles, interval_ms=MINUTE)
    # Sampling error is about 1-2 %; discrete monitoring makes range estimators read a few
    # percent low. 7 % bounds both with a fixed seed.
    assert estimate == pytest.approx(sigma, rel=0.07)


def test_strong_drift_inflates_parkinson_but_not_rogers_satchell():
    sigma = 0.5
    candles = _gbm_candles(sigma, bars=3000, steps=400, interval_ms=MINUTE, seed=5, drift=400)
    assert vol.rogers_satchell(*candles, interval_ms=MINUTE) == pytest.approx(sigma, rel=0.07)
    assert vol.parkinson(*candles, interval_ms=MINUTE) > 1.1 * sigma


def test_annualisation_counts_every_bar_of_a_24_7_year():
    assert vol.bars_per_year(86_400_000) == pytest.approx(365.25)
    assert vol.bars_per_year(MINUTE) == pytest.approx(365.25 * 1440)


def _loop_estimates(o, h, lo, c, i, w):
    """The textbook formulas over the bars i-w+1..i, written as loops."""
    n_year = vol.bars_per_year(MINUTE)
    rng = range(i - w + 1, i + 1)
    ln = math.log
    returns = [ln(c[j] / c[j - 1]) for j in rng]
    mean_r = sum(returns) / w
    cc = sum((r - mean_r) ** 2 for r in returns) / (w - 1)
    pk = sum(ln(h[j] / lo[j]) ** 2 for j in rng) / (4 * ln(2) * w)
    gk = sum(0.5 * ln(h[j] / lo[j]) ** 2 - (2 * ln(2) - 1) * ln(c[j] / o[j]) ** 2 for j in rng) / w
    rs_terms = [
        ln(h[j] / c[j]) * ln(h[j] / o[j]) + ln(lo[j] / c[j]) * ln(lo[j] / o[j]) for j in rng
    ]
    rs = sum(rs_terms) / w
    jumps = [ln(o[j] / c[j - 1]) for j in rng]
    bodies = [ln(c[j] / o[j]) for j in rng]
    mj, mb = sum(jumps) / w, sum(bodies) / w
    vo = sum((x - mj) ** 2 for x in jumps) / (w - 1)
    vc = sum((x - mb) ** 2 for x in bodies) / (w - 1)
    k = 0.34 / (1.34 + (w + 1) / (w - 1))
    yz = vo + k * vc + (1 - k) * rs
    names = ("close_to_close", "parkinson", "garman_klass", "rogers_satchell", "yang_zhang")
    return {n: math.sqrt(v * n_year) for n, v in zip(names, (cc, pk, gk, rs, yz), strict=True)}


def test_rolling_windows_match_the_formulas_written_as_loops():
    rng = np.random.default_rng(9)
    n, w = 60, 12
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    o = np.concatenate(([100.0], c[:-1])) * np.exp(rng.normal(0, 0.0005, n))
    h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0, 0.001, n)))
    lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0, 0.001, n)))
    rolling = {
        name: vol.realized_volatility(name, o, h, lo, c, interval_ms=MINUTE, window=w)
        for name in vol.ESTIMATORS
    }
    for name, series in rolling.items():
        assert series.shape == (n,)
        first = w if name in ("close_to_close", "yang_zhang") else w - 1
        assert np.isnan(series[:first]).all(), name
    for i in range(w, n):
        expected = _loop_estimates(o, h, lo, c, i, w)
        for name, value in expected.items():
            assert rolling[name][i] == pytest.approx(value, rel=1e-10), (name, i)


def test_unknown_estimator_is_refused():
    with pytest.raises(ValueError):
        vol.realized_volatility("vibes", [1], [1], [1], [1], interval_ms=MINUTE)
