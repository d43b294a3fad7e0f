"""VPIN against a hand-computed tape and a plain loop that fills buckets trade bar by bar."""

import numpy as np
import pytest
from scipy.stats import norm

from analytics.vpin import vpin


def _loop_reference(ts, price, size, bucket_volume, window, bar_ms):
    bars = []  # [bar id, first price, close, volume, last ts]
    for t, p, q in zip(ts, price, size, strict=True):
        if bars and bars[-1][0] == t // bar_ms:
            bars[-1][2], bars[-1][4] = p, t
            bars[-1][3] += q
        else:
            bars.append([t // bar_ms, p, p, q, t])
    dp = [bars[0][2] - bars[0][1]] + [bars[i][2] - bars[i - 1][2] for i in range(1, len(bars))]
    sigma = np.std(dp, ddof=1)
    buckets = []
    room, buy, sell = bucket_volume, 0.0, 0.0
    for (_, _, _, volume, last_ts), change in zip(bars, dp, strict=True):
        fraction = norm.cdf(change / sigma)
        left = volume
        while left > 0:
            piece = min(left, room)
            buy += piece * fraction
            sell += piece * (1 - fraction)
            left -= piece
            room -= piece
            if room == 0:
                buckets.append((last_ts, buy, sell))
                room, buy, sell = bucket_volume, 0.0, 0.0
    out = []
    for j, (t, b, s) in enumerate(buckets):
        if j + 1 < window:
            value = np.nan
        else:
            recent = buckets[j + 1 - window : j + 1]
            value = sum(abs(bs - bb) for _, bb, bs in recent) / (window * bucket_volume)
        out.append((t, b, s, value))
    return out


def test_hand_computed_tape_with_a_bar_spanning_several_buckets():
    # Bars of 1 s: bar 0 (10 -> 11, volume 6), bar 1 empty and skipped, bar 2 (close 10,
    # volume 25), bar 3 (close 13, volume 10). dP = [1, -1, 3], sigma = 2.
    ts = [100, 900, 2500, 3100, 3200]
    price = [10, 11, 10, 12, 13]
    size = [4, 2, 25, 3, 7]
    result = vpin(ts, price, size, bucket_volume=10, window=2, bar_ms=1000)
    up, down, jump = norm.cdf(0.5), norm.cdf(-0.5), norm.cdf(1.5)
    expected_buy = [6 * up + 4 * down, 10 * down, 10 * down, 1 * down + 9 * jump]
    assert result.ts_ms.tolist() == [2500, 2500, 2500, 3200]  # the last volume unit is dropped
    np.testing.assert_allclose(result.buy_volume, expected_buy, rtol=1e-12)
    np.testing.assert_allclose(result.sell_volume, 10 - np.array(expected_buy), rtol=1e-12)
    imbalance = np.abs(10 - 2 * np.array(expected_buy))
    assert np.isnan(result.vpin[0])
    np.testing.assert_allclose(result.vpin[1:], (imbalance[1:] + imbalance[:-1]) / 20, rtol=1e-12)


def test_empty_bars_are_skipped_so_dp_uses_the_previous_traded_bar():
    a = vpin([0, 500, 1500], [1, 2, 5], [1, 1, 2], bucket_volume=1, window=1, bar_ms=1000)
    b = vpin([0, 500, 9500], [1, 2, 5], [1, 1, 2], bucket_volume=1, window=1, bar_ms=1000)
    np.testing.assert_allclose(a.buy_volume, b.buy_volume, rtol=1e-15)
    assert b.ts_ms.tolist() == [500, 500, 9500, 9500]  # bar 0 fills two buckets


def test_nothing_until_a_bucket_is_complete():
    result = vpin([0, 10], [1, 2], [1, 2], bucket_volume=10, window=1, bar_ms=1000)
    assert result.ts_ms.size == 0


def test_random_tape_matches_the_loop_reference():
    rng = np.random.default_rng(11)
    n = 20_000
    ts = np.cumsum(rng.integers(0, 3000, n)) + 1_764_000_000_000
    price = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    size = rng.integers(1, 50, n).astype(float)  # whole units: bucket edges are exact
    result = vpin(ts, price, size, bucket_volume=500, window=20, bar_ms=60_000)
    expected = _loop_reference(ts, price, size, 500, 20, 60_000)
    assert len(expected) == result.ts_ms.size > 100
    ref = np.array([(b, s, v) for _, b, s, v in expected])
    assert result.ts_ms.tolist() == [t for t, *_ in expected]
    np.testing.assert_allclose(result.buy_volume, ref[:, 0], rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(result.sell_volume, ref[:, 1], rtol=1e-9, atol=1e-8)
    assert np.isnan(result.vpin[:19]).all()
    np.testing.assert_allclose(result.vpin[19:], ref[19:, 2], rtol=1e-9)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        vpin([0], [1], [1], bucket_volume=0)
