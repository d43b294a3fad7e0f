"""OFI against a hand-computed tape and a plain loop over random books."""

import numpy as np
import pytest

from analytics.ofi import ofi


def _loop_reference(ts, bp, bq, ap, aq, interval):
    totals: dict[int, float] = {}
    for n in range(len(ts)):
        start = (ts[n] // interval) * interval
        totals.setdefault(start, 0.0)
        if n == 0:
            continue
        e = 0.0
        if bp[n] >= bp[n - 1]:
            e += bq[n]
        if bp[n] <= bp[n - 1]:
            e -= bq[n - 1]
        if ap[n] <= ap[n - 1]:
            e -= aq[n]
        if ap[n] >= ap[n - 1]:
            e += aq[n - 1]
        totals[start] += e
    starts = sorted(totals)
    return np.array(starts), np.array([totals[s] for s in starts])


def test_hand_computed_tape_sums_events_per_epoch_aligned_interval():
    ts = [0, 500, 1200, 1999, 3000]
    bid_px = [100, 100, 101, 100.5, 100.5]
    bid_sz = [5, 7, 3, 2, 2]
    ask_px = [101, 101, 102, 101.5, 101.5]
    ask_sz = [4, 4, 6, 1, 3]
    # e: 500 -> +7-5 = 2; 1200 -> bid up +3, ask up +4 = 7; 1999 -> bid down -3, ask down -1
    # = -4; 3000 -> bid same 0, ask same -3+1 = -2. Nothing happened in [2000, 3000).
    result = ofi(ts, bid_px, bid_sz, ask_px, ask_sz, 1000)
    assert result.start_ms.tolist() == [0, 1000, 3000]
    assert result.ofi.tolist() == [2.0, 3.0, -2.0]


def test_first_event_of_an_interval_compares_with_the_previous_interval():
    # The second update is the only one in its interval; its e uses the update before it.
    result = ofi([999, 1001], [10, 11], [1, 2], [12, 12], [3, 3], 1000)
    assert result.start_ms.tolist() == [0, 1000]
    assert result.ofi.tolist() == [0.0, 2.0 + 0.0]


def test_intervals_are_aligned_to_the_epoch_not_to_the_first_update():
    result = ofi([1_700_000_000_250, 1_700_000_000_900], [1, 1], [1, 2], [2, 2], [1, 1], 1000)
    assert result.start_ms.tolist() == [1_700_000_000_000]


def test_random_books_match_a_plain_loop():
    rng = np.random.default_rng(7)
    n = 5000
    ts = np.cumsum(rng.integers(0, 400, n)) + 1_764_000_000_000
    mid = 100 + np.cumsum(rng.choice([-0.5, 0, 0, 0.5], n))
    bp = mid - rng.choice([0.5, 1.0], n)
    ap = mid + rng.choice([0.5, 1.0], n)
    bq = rng.integers(1, 20, n).astype(float)
    aq = rng.integers(1, 20, n).astype(float)
    expected_starts, expected = _loop_reference(ts, bp, bq, ap, aq, 1000)
    result = ofi(ts, bp, bq, ap, aq, 1000)
    assert np.array_equal(result.start_ms, expected_starts)
    np.testing.assert_allclose(result.ofi, expected, rtol=0, atol=1e-9)


def test_out_of_order_updates_are_refused():
    with pytest.raises(ValueError):
        ofi([2, 1], [1, 1], [1, 1], [2, 2], [1, 1], 1000)
