"""Order-flow imbalance of Cont, Kukanov & Stoikov (2014), vectorised.

For each best-bid/best-ask update n > 0,

    e_n = 1{Pb_n >= Pb_{n-1}} qb_n - 1{Pb_n <= Pb_{n-1}} qb_{n-1}
          - 1{Pa_n <= Pa_{n-1}} qa_n + 1{Pa_n >= Pa_{n-1}} qa_{n-1}

(non-strict inequalities; e_n always compares with the update just before it, also across
interval boundaries, so no flow is lost at the edges). The OFI of the interval
[k dt, (k+1) dt), aligned to the Unix epoch, is the sum of e_n over the updates stamped in it.
The live stream computes the same numbers incrementally; keep the two definitions identical.

Plain numpy: no Django here, so notebooks can import it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike


class OfiSeries(NamedTuple):
    """Interval starts (ms since the epoch) and the OFI of each interval."""

    start_ms: np.ndarray
    ofi: np.ndarray


def order_flow_events(
    bid_px: ArrayLike, bid_sz: ArrayLike, ask_px: ArrayLike, ask_sz: ArrayLike
) -> np.ndarray:
    """e_n for every update; e_0 is 0 because the first update has nothing to compare with."""
    bp, bq, ap, aq = (np.asarray(a, dtype=float) for a in (bid_px, bid_sz, ask_px, ask_sz))
    e = np.zeros(bp.shape[0])
    if bp.shape[0] > 1:
        e[1:] = (
            np.where(bp[1:] >= bp[:-1], bq[1:], 0.0)
            - np.where(bp[1:] <= bp[:-1], bq[:-1], 0.0)
            - np.where(ap[1:] <= ap[:-1], aq[1:], 0.0)
            + np.where(ap[1:] >= ap[:-1], aq[:-1], 0.0)
        )
    return e


def ofi(
    ts_ms: ArrayLike,
    bid_px: ArrayLike,
    bid_sz: ArrayLike,
    ask_px: ArrayLike,
    ask_sz: ArrayLike,
    interval_ms: int,
) -> OfiSeries:
    """OFI per epoch-aligned interval, for the intervals that hold at least one update.

    Updates must be in time order (non-decreasing ``ts_ms``). The first update's interval is
    included even when that update is alone in it; its OFI is then 0.
    """
    if interval_ms <= 0:
        raise ValueError("interval_ms must be positive")
    ts = np.asarray(ts_ms, dtype=np.int64)
    if ts.size == 0:
        return OfiSeries(np.empty(0, dtype=np.int64), np.empty(0))
    if np.any(ts[1:] < ts[:-1]):
        raise ValueError("ts_ms must be in non-decreasing order")
    e = order_flow_events(bid_px, bid_sz, ask_px, ask_sz)
    interval = ts // interval_ms  # floor division: epoch-aligned, also before 1970
    first = np.concatenate(([0], np.flatnonzero(interval[1:] != interval[:-1]) + 1))
    return OfiSeries(interval[first] * interval_ms, np.add.reduceat(e, first))
