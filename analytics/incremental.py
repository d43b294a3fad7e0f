"""OFI per interval and VPIN buckets one event at a time, with O(1) work per event.

These follow the batch definitions of ``analytics.ofi`` and ``analytics.vpin`` step by step,
so on the same tape they produce the same rows (tests/analytics/test_incremental.py checks
it). What a live process cannot know is the future, which matters in two places:

- An interval (OFI) or a clock bar (VPIN) is complete only when an event of a later one
  arrives; ``flush()`` closes the open one at the end of a tape.
- The batch VPIN's sigma is the sample standard deviation of *all* dP of the input, which
  includes bars that have not happened yet. Live, sigma comes from a ``SigmaSource``:
  ``FixedSigma`` (a known value: what the agreement test gives, with the batch's own sigma)
  or ``TrailingSigma``, the sample standard deviation of the last ``bars`` dP (a day of
  1-minute bars by default), which the feed runner seeds from the stored 1-minute candles so
  a restart does not start blind. Each bar is classified with the sigma known when it closes
  (before its own dP is added), so a bar never influences its own classification.
  Until two dP are known, the batch's limit rule applies (Phi = 1, 0 or 1/2 by the sign).

Events must come in time order; a late event (an exchange can stamp a message a few ms
before the previous one) is counted in the current interval or bar rather than reopening a
closed one, which was already published.

Plain Python and scipy: no Django here.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from scipy.special import ndtr


# --- OFI ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OfiInterval:
    start_ms: int
    ofi: float
    updates: int


class IncrementalOfi:
    """Cont, Kukanov & Stoikov's OFI summed per epoch-aligned interval of ``interval_ms``."""

    def __init__(self, interval_ms: int = 1_000) -> None:
        if interval_ms <= 0:
            raise ValueError("interval_ms must be positive")
        self.interval_ms = interval_ms
        self._prev: tuple[float, float, float, float] | None = None
        self._interval: int | None = None
        self._sum = 0.0
        self._updates = 0

    def update(
        self, ts_ms: int, bid_px: float, bid_sz: float, ask_px: float, ask_sz: float
    ) -> OfiInterval | None:
        """Fold in one best-bid/ask update; returns the interval it closed, if any."""
        interval = ts_ms // self.interval_ms
        closed = None
        if self._interval is None:
            self._interval = interval
        elif interval > self._interval:
            closed = self._close(self._interval)
            self._interval = interval
        if self._prev is None:
            e = 0.0  # the first update has nothing to compare with, as in the batch
        else:
            pb, qb, pa, qa = self._prev
            # Same terms in the same order as analytics.ofi.order_flow_events.
            e = (
                (bid_sz if bid_px >= pb else 0.0)
                - (qb if bid_px <= pb else 0.0)
                - (ask_sz if ask_px <= pa else 0.0)
                + (qa if ask_px >= pa else 0.0)
            )
        self._sum += e
        self._updates += 1
        self._prev = (bid_px, bid_sz, ask_px, ask_sz)
        return closed

    def _close(self, interval: int) -> OfiInterval:
        """The open interval (passed in: the caller knows one is open) as a result."""
        out = OfiInterval(interval * self.interval_ms, self._sum, self._updates)
        self._sum, self._updates = 0.0, 0
        return out

    def flush(self) -> OfiInterval | None:
        """Close the open interval (end of a tape); the next update starts a new one."""
        if self._interval is None or self._updates == 0:
            return None
        out = self._close(self._interval)
        self._interval = None
        return out

    def close_before(self, ts_ms: int) -> OfiInterval | None:
        """Close the open interval if it ended at or before ``ts_ms`` (a clock tick): a quiet
        book still gets its last interval out. The last update stays the reference for e_n."""
        if self._interval is None or (self._interval + 1) * self.interval_ms > ts_ms:
            return None
        return self.flush()


# --- VPIN ---------------------------------------------------------------------------------
class SigmaSource(Protocol):
    def current(self) -> float | None: ...

    def add(self, dp: float) -> None: ...


class FixedSigma:
    """A sigma known in advance (e.g. the batch definition's, computed over a whole tape)."""

    def __init__(self, sigma: float | None) -> None:
        self.sigma = sigma

    def current(self) -> float | None:
        return self.sigma

    def add(self, dp: float) -> None:
        return None


class TrailingSigma:
    """Sample standard deviation (ddof=1) of the last ``bars`` dP, updated in O(1).

    Running sums are kept of dP minus a fixed shift (the first dP seen), which keeps the
    textbook sum-of-squares formula accurate: dP are small and centred near zero.
    """

    def __init__(self, bars: int = 1_440) -> None:
        if bars < 2:
            raise ValueError("bars must be at least 2")
        self._values: deque[float] = deque(maxlen=bars)
        self._shift: float | None = None
        self._sum = 0.0
        self._sum_sq = 0.0

    def add(self, dp: float) -> None:
        if self._shift is None:
            self._shift = dp
        if len(self._values) == self._values.maxlen:
            old = self._values[0] - self._shift
            self._sum -= old
            self._sum_sq -= old * old
        self._values.append(dp)
        d = dp - self._shift
        self._sum += d
        self._sum_sq += d * d

    def current(self) -> float | None:
        n = len(self._values)
        if n < 2:
            return None
        variance = (self._sum_sq - self._sum * self._sum / n) / (n - 1)
        return math.sqrt(variance) if variance > 0 else 0.0


def buy_fraction(dp: float, sigma: float | None) -> float:
    """Phi(dP / sigma), or its limit where sigma is unknown or zero (as analytics.vpin)."""
    if sigma is not None and math.isfinite(sigma) and sigma > 0:
        return float(ndtr(dp / sigma))
    return 1.0 if dp > 0 else 0.0 if dp < 0 else 0.5


@dataclass(frozen=True, slots=True)
class VpinBucket:
    ts_ms: int  # last trade of the bar that completed the bucket
    buy_volume: float
    sell_volume: float
    vpin: float | None  # None until `window` buckets exist
    sigma: float | None  # the sigma the completing bar was classified with


class IncrementalVpin:
    """VPIN with bulk volume classification over clock bars, bucket by bucket."""

    def __init__(
        self,
        bucket_volume: float,
        *,
        window: int = 50,
        bar_ms: int = 60_000,
        sigma: SigmaSource | None = None,
    ) -> None:
        if bucket_volume <= 0 or window < 1 or bar_ms <= 0:
            raise ValueError("bucket_volume, window and bar_ms must be positive")
        self.bucket_volume = float(bucket_volume)
        self.window = window
        self.bar_ms = bar_ms
        self.sigma = sigma if sigma is not None else TrailingSigma()
        # The open bar.
        self._bar: int | None = None
        self._last_bar: int | None = None
        self._first_price = 0.0
        self._close = 0.0
        self._close_ts = 0
        self._volume = 0.0
        # The previous bar's close, the open bucket, and the last `window` imbalances.
        self._prev_close: float | None = None
        self._filled = 0.0
        self._filled_buy = 0.0
        self._imbalances: deque[float] = deque(maxlen=window)

    def trade(self, ts_ms: int, price: float, size: float) -> list[VpinBucket]:
        """Fold in one trade; returns the buckets completed by the bar it closed (often none)."""
        bar = ts_ms // self.bar_ms
        completed: list[VpinBucket] = []
        if self._bar is None:
            self._open(bar, price)
        elif bar > self._bar:
            completed = self._close_bar()
            self._open(bar, price)
        self._close = price
        self._close_ts = max(ts_ms, self._close_ts)
        self._volume += size
        return completed

    def flush(self) -> list[VpinBucket]:
        """Close the open bar (end of a tape); the incomplete bucket stays open."""
        if self._bar is None:
            return []
        completed = self._close_bar()
        self._bar = None
        return completed

    def close_before(self, ts_ms: int) -> list[VpinBucket]:
        """Close the open bar if it ended at or before ``ts_ms`` (a clock tick)."""
        if self._bar is None or (self._bar + 1) * self.bar_ms > ts_ms:
            return []
        return self.flush()

    @property
    def bar_start_ms(self) -> int | None:
        """Start of the open bar, or of the last closed one; None before the first trade."""
        return None if self._last_bar is None else self._last_bar * self.bar_ms

    def _open(self, bar: int, price: float) -> None:
        self._bar = self._last_bar = bar
        self._first_price = price
        self._volume = 0.0

    def _close_bar(self) -> list[VpinBucket]:
        reference = self._first_price if self._prev_close is None else self._prev_close
        dp = self._close - reference
        sigma = self.sigma.current()
        fraction = buy_fraction(dp, sigma)
        self.sigma.add(dp)
        self._prev_close = self._close
        completed = []
        remaining = self._volume
        # A bar that crosses bucket boundaries is split pro rata, each piece keeping the
        # bar's buy fraction; it may complete several buckets.
        while self._filled + remaining >= self.bucket_volume:
            piece = self.bucket_volume - self._filled
            buy = self._filled_buy + piece * fraction
            completed.append(self._bucket(buy, sigma))
            remaining -= piece
            self._filled = self._filled_buy = 0.0
        self._filled += remaining
        self._filled_buy += remaining * fraction
        return completed

    def _bucket(self, buy: float, sigma: float | None) -> VpinBucket:
        sell = self.bucket_volume - buy
        self._imbalances.append(abs(sell - buy))
        vpin = None
        if len(self._imbalances) == self.window:
            # Summed afresh (window is a constant): no drift from add-and-subtract.
            vpin = math.fsum(self._imbalances) / (self.window * self.bucket_volume)
        return VpinBucket(self._close_ts, buy, sell, vpin, sigma)
