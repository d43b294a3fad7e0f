"""The live (one event at a time) OFI and VPIN against the batch definitions on the same tape."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.incremental import (
    FixedSigma,
    IncrementalOfi,
    IncrementalVpin,
    TrailingSigma,
)
from analytics.ofi import ofi
from analytics.vpin import vpin


def _book_tape(n: int, seed: int):
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(1_700_000_000_000, 1_700_000_000_000 + n * 40, n))
    bid = 100 + np.cumsum(rng.integers(-1, 2, n)) * 0.5
    ask = bid + 0.5 * rng.integers(1, 3, n)
    return ts, bid, rng.exponential(2, n), ask, rng.exponential(2, n)


def _trade_tape(n: int, seed: int):
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(1_700_000_000_000, 1_700_000_000_000 + 6 * 3_600_000, n))
    price = 100 * np.exp(np.cumsum(rng.normal(0, 0.0005, n)))
    size = rng.exponential(1.0, n)
    return ts, price, size


def _batch_sigma(ts, price, bar_ms):
    bar = ts // bar_ms
    starts = np.r_[0, np.flatnonzero(np.diff(bar)) + 1]
    ends = np.r_[starts[1:], ts.size] - 1
    close = price[ends]
    dp = np.r_[close[0] - price[0], np.diff(close)]
    return float(np.std(dp, ddof=1))


def _run_ofi(ts, bp, bq, ap, aq, interval_ms):
    live = IncrementalOfi(interval_ms)
    out = []
    for row in zip(ts.tolist(), bp.tolist(), bq.tolist(), ap.tolist(), aq.tolist(), strict=True):
        closed = live.update(*row)
        if closed is not None:
            out.append(closed)
    last = live.flush()
    if last is not None:
        out.append(last)
    return out


@pytest.mark.parametrize("interval_ms", [1_000, 250, 60_000])
def test_incremental_ofi_equals_the_batch_on_the_same_tape(interval_ms):
    tape = _book_tape(20_000, seed=interval_ms)

    batch = ofi(*tape, interval_ms=interval_ms)
    live = _run_ofi(*tape, interval_ms)

    np.testing.assert_array_equal([i.start_ms for i in live], batch.start_ms)
    np.testing.assert_allclose([i.ofi for i in live], batch.ofi, rtol=1e-12, atol=1e-9)
    assert sum(i.updates for i in live) == tape[0].size


def test_incremental_ofi_hand_computed_across_an_interval_boundary():
    """Bid up with 3 (e=+3), then ask down with 2 in the next second (e=-2, comparing with
    the update of the previous second)."""
    live = IncrementalOfi(1_000)
    assert live.update(1_000, 10.0, 1.0, 11.0, 1.0) is None
    assert live.update(1_500, 10.5, 3.0, 11.0, 1.0) is None
    first = live.update(2_100, 10.5, 3.0, 10.75, 2.0)
    assert (first.start_ms, first.ofi, first.updates) == (1_000, 3.0, 2)
    # Same bid: +3 - 3; ask down: -2; ask not up: +0.
    assert live.flush().ofi == -2.0


def _run_vpin(ts, price, size, **kwargs):
    live = IncrementalVpin(**kwargs)
    out = []
    for t, p, q in zip(ts.tolist(), price.tolist(), size.tolist(), strict=True):
        out.extend(live.trade(t, p, q))
    out.extend(live.flush())
    return out


@pytest.mark.parametrize(("bucket_volume", "window"), [(40.0, 10), (7.3, 50), (500.0, 3)])
def test_incremental_vpin_with_the_batch_sigma_equals_the_batch_on_the_same_tape(
    bucket_volume, window
):
    """The batch's sigma looks at the whole tape; given that same sigma, the live version
    must reproduce every bucket: end times, buy and sell volumes and VPIN."""
    ts, price, size = _trade_tape(30_000, seed=int(bucket_volume))
    sigma = _batch_sigma(ts, price, 60_000)

    batch = vpin(ts, price, size, bucket_volume, window=window, bar_ms=60_000)
    live = _run_vpin(
        ts, price, size, bucket_volume=bucket_volume, window=window, sigma=FixedSigma(sigma)
    )

    assert len(live) == batch.ts_ms.size > window
    np.testing.assert_array_equal([b.ts_ms for b in live], batch.ts_ms)
    np.testing.assert_allclose([b.buy_volume for b in live], batch.buy_volume, rtol=1e-9)
    np.testing.assert_allclose([b.sell_volume for b in live], batch.sell_volume, rtol=1e-9)
    live_vpin = np.array([np.nan if b.vpin is None else b.vpin for b in live])
    np.testing.assert_array_equal(np.isnan(live_vpin), np.isnan(batch.vpin))
    np.testing.assert_allclose(live_vpin, batch.vpin, rtol=1e-9)


def test_a_bar_spanning_several_buckets_fills_each_with_its_buy_fraction():
    """Bars: 1 lot at 100 (dP 0), then 4 lots closing at 101 (dP +1); buckets of 2 lots.
    With no sigma the limit rule gives the fractions 1/2 and 1."""
    live = IncrementalVpin(2.0, window=2, bar_ms=1_000, sigma=FixedSigma(None))
    assert live.trade(0, 100.0, 1.0) == []
    assert live.trade(1_000, 100.5, 2.0) == []
    buckets = live.trade(1_500, 101.0, 2.0) + live.flush()

    # Bucket 1: 1 lot at 1/2 + 1 lot at 1; bucket 2: 2 lots at 1; 1 lot left over, dropped.
    assert [(b.ts_ms, b.buy_volume, b.sell_volume) for b in buckets] == [
        (1_500, 1.5, 0.5),
        (1_500, 2.0, 0.0),
    ]
    assert buckets[0].vpin is None
    assert buckets[1].vpin == pytest.approx((1.0 + 2.0) / (2 * 2.0))


def test_the_spanning_bar_agrees_with_the_batch_given_the_batch_sigma():
    tape = ([0, 1_000, 1_500], [100.0, 100.5, 101.0], [1.0, 2.0, 2.0])
    sigma = float(np.std([0.0, 1.0], ddof=1))
    live = _run_vpin(
        *map(np.array, tape), bucket_volume=2.0, window=2, bar_ms=1_000, sigma=FixedSigma(sigma)
    )
    batch = vpin(*tape, bucket_volume=2.0, window=2, bar_ms=1_000)

    assert [b.ts_ms for b in live] == batch.ts_ms.tolist() == [1_500, 1_500]
    np.testing.assert_allclose([b.buy_volume for b in live], batch.buy_volume, rtol=1e-15)
    assert live[1].vpin == pytest.approx(batch.vpin[1], rel=1e-15)


def test_trailing_sigma_is_the_sample_std_of_the_last_bars():
    rng = np.random.default_rng(2)
    values = rng.normal(0.01, 0.3, 500)
    sigma = TrailingSigma(bars=100)
    for i, value in enumerate(values):
        sigma.add(float(value))
        window = values[max(0, i - 99) : i + 1]
        if window.size < 2:
            assert sigma.current() is None
        else:
            assert sigma.current() == pytest.approx(np.std(window, ddof=1), rel=1e-9)


def test_live_vpin_classifies_each_bar_with_the_sigma_of_the_bars_before_it():
    ts, price, size = _trade_tape(5_000, seed=9)
    bar = ts // 60_000
    ends = np.r_[np.flatnonzero(np.diff(bar)), ts.size - 1]
    close = price[ends]
    dp = np.r_[close[0] - price[0], np.diff(close)]

    buckets = _run_vpin(ts, price, size, bucket_volume=25.0, window=5, sigma=TrailingSigma(bars=30))

    assert len(buckets) > 20
    for bucket in buckets:
        k = int(np.flatnonzero(ts[ends] == bucket.ts_ms)[0])  # the bar that completed it
        before = dp[max(0, k - 30) : k]
        if before.size < 2:
            assert bucket.sigma is None
        else:
            assert bucket.sigma == pytest.approx(np.std(before, ddof=1), rel=1e-9)


def test_a_late_event_is_counted_in_the_open_interval_not_a_closed_one():
    live = IncrementalOfi(1_000)
    live.update(1_000, 10.0, 1.0, 11.0, 1.0)
    closed = live.update(2_000, 10.0, 2.0, 11.0, 1.0)
    assert closed.start_ms == 1_000
    assert live.update(1_999, 10.0, 4.0, 11.0, 1.0) is None  # late: stays in 2_000
    assert live.flush().start_ms == 2_000


def test_the_clock_closes_a_quiet_interval_and_bar():
    ofi_live = IncrementalOfi(1_000)
    ofi_live.update(1_200, 10.0, 1.0, 11.0, 1.0)
    assert ofi_live.close_before(1_999) is None
    assert ofi_live.close_before(2_000).start_ms == 1_000

    vpin_live = IncrementalVpin(1.0, window=1, bar_ms=60_000, sigma=FixedSigma(None))
    vpin_live.trade(10, 100.0, 2.5)
    assert vpin_live.close_before(59_999) == []
    assert [b.ts_ms for b in vpin_live.close_before(60_000)] == [10, 10]
