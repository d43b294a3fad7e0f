"""Realised-volatility estimators over candles, annualised for a market that trades 24/7.

Each estimator returns the annualised volatility (a decimal, 0.5 = 50 %) of the whole sample,
or, with ``window=w``, an array as long as the input whose element i uses the bars ending at i
(NaN until enough bars exist). Annualising multiplies the per-bar variance by the number of
bars in 365.25 days of continuous trading.

- close_to_close: sample variance (ddof=1) of log close-to-close returns; w returns use
  w + 1 closes.
- parkinson: mean of ln(H/L)^2 / (4 ln 2).
- garman_klass: mean of 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2.
- rogers_satchell: mean of ln(H/C) ln(H/O) + ln(L/C) ln(L/O) (drift-independent).
- yang_zhang: var(ln O_i/C_{i-1}) + k var(ln C_i/O_i) + (1 - k) RS, with
  k = 0.34 / (1.34 + (n + 1) / (n - 1)) for n bars; each bar needs the previous close.

Garman-Klass and Yang-Zhang can estimate a negative variance on tiny samples; the volatility
is NaN there rather than a made-up number.

Plain numpy: no Django here, so notebooks can import it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike

from analytics.arrays import FloatArray

MS_PER_YEAR = 365.25 * 86_400_000


def bars_per_year(interval_ms: float) -> float:
    """Number of bars of ``interval_ms`` in a year of round-the-clock trading."""
    if interval_ms <= 0:
        raise ValueError("interval_ms must be positive")
    return MS_PER_YEAR / interval_ms


def _annualise(variance: np.ndarray | float, interval_ms: float) -> np.ndarray | float:
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.asarray(variance) * bars_per_year(interval_ms))[()]


def _mean(values: np.ndarray, window: int | None) -> np.ndarray | float:
    if window is None:
        return float(np.mean(values)) if values.size else np.nan
    out = np.full(values.size, np.nan)
    if values.size >= window:
        out[window - 1 :] = sliding_window_view(values, window).mean(axis=1)
    return out


def _var(values: np.ndarray, window: int | None) -> np.ndarray | float:
    if window is None:
        return float(np.var(values, ddof=1)) if values.size > 1 else np.nan
    out = np.full(values.size, np.nan)
    if values.size >= window and window > 1:
        out[window - 1 :] = sliding_window_view(values, window).var(axis=1, ddof=1)
    return out


def _prepend_nan(values: np.ndarray | float) -> np.ndarray | float:
    """Align series computed on bars 1..n-1 with the input (bar 0 has no previous close)."""
    if np.ndim(values) == 0:
        return values
    return np.concatenate(([np.nan], values))


def _arrays(*values: ArrayLike) -> list[FloatArray]:
    return [np.asarray(v, dtype=float) for v in values]


def close_to_close(
    open_: ArrayLike,
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    *,
    interval_ms: float,
    window: int | None = None,
) -> np.ndarray | float:
    """Standard deviation of log returns between consecutive closes."""
    (c,) = _arrays(close)
    returns = np.diff(np.log(c))
    return _annualise(_prepend_nan(_var(returns, window)), interval_ms)


def parkinson(
    open_: ArrayLike,
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    *,
    interval_ms: float,
    window: int | None = None,
) -> np.ndarray | float:
    """Parkinson (1980): the high-low range only."""
    h, lo = _arrays(high, low)
    terms = np.log(h / lo) ** 2 / (4.0 * np.log(2.0))
    return _annualise(_mean(terms, window), interval_ms)


def garman_klass(
    open_: ArrayLike,
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    *,
    interval_ms: float,
    window: int | None = None,
) -> np.ndarray | float:
    """Garman & Klass (1980): range plus open-to-close, for driftless prices."""
    o, h, lo, c = _arrays(open_, high, low, close)
    terms = 0.5 * np.log(h / lo) ** 2 - (2.0 * np.log(2.0) - 1.0) * np.log(c / o) ** 2
    return _annualise(_mean(terms, window), interval_ms)


def _rogers_satchell_terms(
    o: FloatArray, h: FloatArray, lo: FloatArray, c: FloatArray
) -> FloatArray:
    # Named: numpy types a product of ufunc results as Any.
    terms: FloatArray = np.log(h / c) * np.log(h / o) + np.log(lo / c) * np.log(lo / o)
    return terms


def rogers_satchell(
    open_: ArrayLike,
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    *,
    interval_ms: float,
    window: int | None = None,
) -> np.ndarray | float:
    """Rogers & Satchell (1991): unbiased under drift."""
    o, h, lo, c = _arrays(open_, high, low, close)
    return _annualise(_mean(_rogers_satchell_terms(o, h, lo, c), window), interval_ms)


def yang_zhang(
    open_: ArrayLike,
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    *,
    interval_ms: float,
    window: int | None = None,
) -> np.ndarray | float:
    """Yang & Zhang (2000): opening jumps, open-to-close and Rogers-Satchell combined."""
    o, h, lo, c = _arrays(open_, high, low, close)
    jump = np.log(o[1:] / c[:-1])
    body = np.log(c[1:] / o[1:])
    rs = _rogers_satchell_terms(o[1:], h[1:], lo[1:], c[1:])
    n = jump.size if window is None else window
    if n < 2:
        return np.nan if window is None else np.full(o.size, np.nan)
    k = 0.34 / (1.34 + (n + 1) / (n - 1))
    variance = _var(jump, window) + k * _var(body, window) + (1.0 - k) * _mean(rs, window)
    return _annualise(_prepend_nan(variance), interval_ms)


ESTIMATORS: dict[str, Callable[..., np.ndarray | float]] = {
    "close_to_close": close_to_close,
    "parkinson": parkinson,
    "garman_klass": garman_klass,
    "rogers_satchell": rogers_satchell,
    "yang_zhang": yang_zhang,
}


def realized_volatility(
    estimator: str,
    open_: ArrayLike,
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    *,
    interval_ms: float,
    window: int | None = None,
) -> np.ndarray | float:
    """Dispatch by estimator name (the API's ``estimator=`` parameter)."""
    try:
        function = ESTIMATORS[estimator]
    except KeyError:
        raise ValueError(f"unknown estimator {estimator!r}; one of {sorted(ESTIMATORS)}") from None
    return function(open_, high, low, close, interval_ms=interval_ms, window=window)
