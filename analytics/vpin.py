"""VPIN of Easley, López de Prado & O'Hara (2012) with bulk volume classification.

The definition, step by step (the live stream follows the same one incrementally):

1. Trades form clock bars of ``bar_ms`` aligned to the Unix epoch; bars without trades do not
   exist (skipped). A bar's price is its last trade's price.
2. dP of a bar is its close minus the previous bar's close; for the first bar, its close minus
   its first trade's price. sigma is the sample standard deviation (ddof=1) of all dP.
3. Bar buy volume = volume * Phi(dP / sigma); sell volume is the rest.
4. Bars fill buckets of exactly ``bucket_volume`` in order; a bar that crosses a boundary is
   split pro rata, each piece keeping the bar's buy fraction (one bar may fill several
   buckets). The last, incomplete bucket is dropped.
5. From the ``window``-th bucket on, VPIN = sum |V_sell - V_buy| over the last ``window``
   buckets / (window * bucket_volume), stamped with the timestamp of the last trade of the bar
   that completed the bucket; NaN before the window fills.

Where sigma is zero or undefined (fewer than two bars, or no price change at all) the ratio
dP / sigma is taken as its limit: Phi is 1 for a rise, 0 for a fall and 1/2 for no change.

Plain numpy/scipy: no Django here, so notebooks can import it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr


class TooManyBuckets(ValueError):
    """The trades' volume makes more buckets than the caller allows (raised before any
    per-bucket array is allocated: a tiny ``bucket_volume`` would otherwise ask for
    billions of them)."""

    def __init__(self, buckets: float, max_buckets: int) -> None:
        super().__init__(f"{buckets:.3g} buckets, more than {max_buckets}")
        self.buckets = buckets
        self.max_buckets = max_buckets


def buckets_implied(total_volume: float, bucket_volume: float) -> float:
    """How many complete buckets ``total_volume`` fills: a float, inf where the ratio
    overflows (``bucket_volume`` 2.2e-313 is a valid, subnormal, positive float)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        count = np.floor_divide(np.float64(total_volume), np.float64(bucket_volume))
    return float(count) if np.isfinite(count) else math.inf


class VpinSeries(NamedTuple):
    """One row per complete bucket."""

    ts_ms: np.ndarray
    buy_volume: np.ndarray
    sell_volume: np.ndarray
    vpin: np.ndarray


def buy_fractions(dp: np.ndarray) -> np.ndarray:
    """Phi(dP / sigma) with sigma the sample standard deviation of all dP."""
    sigma = np.std(dp, ddof=1) if dp.size > 1 else np.nan
    if np.isfinite(sigma) and sigma > 0:
        fractions: np.ndarray = ndtr(dp / sigma)  # scipy's ufuncs are typed as returning Any
        return fractions
    return np.where(dp > 0, 1.0, np.where(dp < 0, 0.0, 0.5))


def vpin(
    ts_ms: ArrayLike,
    price: ArrayLike,
    size: ArrayLike,
    bucket_volume: float,
    window: int = 50,
    bar_ms: int = 60_000,
    max_buckets: int | None = None,
) -> VpinSeries:
    """Per-bucket end timestamps, buy and sell volumes, and VPIN. Trades in time order.

    ``max_buckets`` bounds the work: TooManyBuckets is raised before allocating more."""
    if not (math.isfinite(bucket_volume) and bucket_volume > 0) or window < 1 or bar_ms <= 0:
        raise ValueError("bucket_volume, window and bar_ms must be positive")
    ts = np.asarray(ts_ms, dtype=np.int64)
    px = np.asarray(price, dtype=float)
    qty = np.asarray(size, dtype=float)
    empty = VpinSeries(np.empty(0, dtype=np.int64), np.empty(0), np.empty(0), np.empty(0))
    if ts.size == 0:
        return empty
    if np.any(ts[1:] < ts[:-1]):
        raise ValueError("ts_ms must be in non-decreasing order")

    bar = ts // bar_ms
    starts = np.concatenate(([0], np.flatnonzero(bar[1:] != bar[:-1]) + 1))
    ends = np.append(starts[1:], ts.size) - 1
    close = px[ends]
    dp = np.empty(close.size)
    dp[0] = close[0] - px[0]
    dp[1:] = np.diff(close)
    volume = np.add.reduceat(qty, starts)
    fraction = buy_fractions(dp)

    # Buckets as slices of cumulative volume: the buy volume of bucket j is the increase of the
    # piecewise-linear cumulative buy volume between j*B and (j+1)*B, which is exactly the
    # pro-rata split of every bar that overlaps the bucket.
    cum_volume = np.cumsum(volume)
    cum_buy = np.cumsum(volume * fraction)
    implied = buckets_implied(cum_volume[-1], bucket_volume)
    if max_buckets is not None and implied > max_buckets:
        raise TooManyBuckets(implied, max_buckets)
    if not math.isfinite(implied):
        raise TooManyBuckets(implied, 0)
    n_buckets = int(implied)
    if n_buckets == 0:
        return empty
    edges = np.arange(n_buckets + 1) * float(bucket_volume)
    bar_at = np.searchsorted(cum_volume, edges, side="left")  # first bar reaching the edge
    bar_at = np.minimum(bar_at, cum_volume.size - 1)
    before_volume = cum_volume[bar_at] - volume[bar_at]
    before_buy = cum_buy[bar_at] - volume[bar_at] * fraction[bar_at]
    buy_at_edge = before_buy + (edges - before_volume) * fraction[bar_at]
    buy_at_edge[0] = 0.0
    buy = np.diff(buy_at_edge)
    sell = bucket_volume - buy
    end_ts = ts[ends[bar_at[1:]]]

    imbalance = np.abs(sell - buy)
    result = np.full(n_buckets, np.nan)
    if n_buckets >= window:
        rolling = np.convolve(imbalance, np.ones(window), mode="valid")
        result[window - 1 :] = rolling / (window * bucket_volume)
    return VpinSeries(end_ts, buy, sell, result)
