"""Vectorised backtests of simple strategies over candle closes.

Conventions (each one is a choice a quant would ask about):

- A strategy turns closes into a *target position* per bar, in units of equity: +1 long,
  -1 short, 0 flat (``allow_short=False`` turns every -1 into 0). The target computed from the
  close of bar t is held over bar t+1: signals act on the next bar, so no bar's return is
  ever earned by a signal that needed that bar's close (no look-ahead).
- Bar return r_t = C_t / C_{t-1} - 1. Strategy return = p_t r_t - cost |p_t - p_{t-1}|, with
  p_t the position held over bar t and cost = (fee_bp + slippage_bp) / 10 000 per unit of
  equity traded (paid at the close where the position changes).
- Equity starts at 1 before the first bar and compounds the strategy returns.
- Metrics: total return; CAGR over the calendar time the candles span; volatility, Sharpe and
  Sortino annualised for a 24/7 market from per-bar returns (risk-free rate 0, Sortino's
  downside deviation is sqrt(mean(min(r, 0)^2)) over all bars); max drawdown as a positive
  fraction of the running peak and its duration, the longest time from a peak until equity
  is back at it (or the end); turnover = sum |p_t - p_{t-1}| (equity multiples traded);
  trade count = number of bars on which the position changes.

Plain numpy: no Django here, so notebooks can import it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

MS_PER_YEAR = 365.25 * 86_400_000
BP = 1e-4


def _window_moments(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum and sum of squares of every run of ``window`` consecutive values, each about a
    local centre, with that centre: O(n) time and memory (no n x window array).

    The series is cut into blocks of ``window`` values, each centred on its first value,
    with prefix sums inside each block. A window is the tail of one block and the head of
    the next, so its sums come from two prefix sums shifted to the later block's centre.
    Sums of values near their own window's level keep the precision that one cumulative
    sum over the whole series would lose (prices near 60,000, small spreads).
    """
    n = x.size
    blocks = -(-n // window)
    padded = np.concatenate((x, np.full(blocks * window - n, x[-1])))
    grid = padded.reshape(blocks, window)
    centre = grid[:, 0].copy()
    centred = grid - centre[:, None]
    sum1 = np.cumsum(centred, axis=1)
    sum2 = np.cumsum(centred * centred, axis=1)
    ends = np.arange(window - 1, n)
    block, col = ends // window, ends % window
    prev = np.maximum(block - 1, 0)
    tail = col < window - 1  # the window also takes the tail of the previous block
    tail1 = np.where(tail, sum1[prev, -1] - sum1[prev, col], 0.0)
    tail2 = np.where(tail, sum2[prev, -1] - sum2[prev, col], 0.0)
    count = window - 1 - col
    shift = np.where(tail, centre[prev] - centre[block], 0.0)
    s1 = sum1[block, col] + tail1 + count * shift
    s2 = sum2[block, col] + tail2 + 2.0 * shift * tail1 + count * shift * shift
    return centre[block], s1, s2


def _rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    out = np.full(x.size, np.nan)
    if x.size >= window:
        centre, s1, _ = _window_moments(x, window)
        out[window - 1 :] = centre + s1 / window
    return out


def _rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    """Sample standard deviation (ddof=1) of every window, O(n).

    A window without any change of value has exactly 0, counted with integers: rounding
    in the sums would otherwise turn a flat window into a tiny spread and a huge z-score.
    """
    out = np.full(x.size, np.nan)
    if x.size >= window and window > 1:
        _, s1, s2 = _window_moments(x, window)
        variance = np.maximum(s2 - s1 * s1 / window, 0.0) / (window - 1)
        changes = np.concatenate(([0], np.cumsum(x[1:] != x[:-1])))
        flat = changes[window - 1 :] == changes[: x.size - window + 1]
        out[window - 1 :] = np.where(flat, 0.0, np.sqrt(variance))
    return out


def _forward_fill(values: np.ndarray) -> np.ndarray:
    """NaN takes the last non-NaN value before it (0 before the first one)."""
    index = np.where(np.isnan(values), -1, np.arange(values.size))
    np.maximum.accumulate(index, out=index)
    return np.where(index >= 0, values[np.maximum(index, 0)], 0.0)


def sma_crossover(close: np.ndarray, *, fast: int = 10, slow: int = 30) -> np.ndarray:
    """Long while the fast simple moving average is above the slow one, short while below."""
    if not 1 <= fast < slow:
        raise ValueError("need 1 <= fast < slow")
    fast_ma, slow_ma = _rolling_mean(close, fast), _rolling_mean(close, slow)
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(slow_ma), 0.0, np.sign(fast_ma - slow_ma))


def momentum(close: np.ndarray, *, lookback: int = 20) -> np.ndarray:
    """Long after a rise over the last ``lookback`` bars, short after a fall."""
    if lookback < 1:
        raise ValueError("lookback must be at least 1")
    signal = np.zeros(close.size)
    if close.size > lookback:
        signal[lookback:] = np.sign(close[lookback:] - close[:-lookback])
    return signal


def mean_reversion(
    close: np.ndarray, *, window: int = 20, entry_z: float = 2.0, exit_z: float = 0.5
) -> np.ndarray:
    """Z-score of the close against its rolling mean and standard deviation (``window`` bars):
    short above +entry_z, long below -entry_z, flat once |z| falls under exit_z; in between,
    the position is held (hysteresis, done vectorised by forward-filling the decisions)."""
    if window < 2 or not 0 <= exit_z < entry_z:
        raise ValueError("need window >= 2 and 0 <= exit_z < entry_z")
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (close - _rolling_mean(close, window)) / _rolling_std(close, window)
        decision = np.full(close.size, np.nan)
        decision[np.abs(z) < exit_z] = 0.0
        decision[z > entry_z] = -1.0
        decision[z < -entry_z] = 1.0
    return _forward_fill(decision)


STRATEGIES: dict[str, Callable[..., np.ndarray]] = {
    "sma_crossover": sma_crossover,
    "momentum": momentum,
    "mean_reversion": mean_reversion,
}


@dataclass(frozen=True)
class BacktestResult:
    ts_ms: np.ndarray
    position: np.ndarray  # held over each bar (decided at the previous close)
    returns: np.ndarray  # strategy return of each bar, after costs
    equity: np.ndarray  # after each bar; 1.0 before the first
    metrics: dict[str, float | int | None]


def _drawdown(equity: np.ndarray, ts_ms: np.ndarray) -> tuple[float, int]:
    """Max drawdown (positive fraction) and the longest stretch from a peak until equity is
    back at it (or until the last bar, if it never is), in ms."""
    curve = np.concatenate(([1.0], equity))
    times = ts_ms  # one more than equity: the start, then the end of every bar
    peak = np.maximum.accumulate(curve)
    max_dd = float(np.max(1.0 - curve / peak))
    under = curve < peak
    last_peak = np.maximum.accumulate(np.where(under, 0, np.arange(curve.size)))
    stretch = under[1:] | under[:-1]  # bar i is under water, or is where it recovered
    durations = (times[1:] - times[last_peak[:-1]])[stretch]
    return max_dd, int(durations.max()) if durations.size else 0


def metrics_compute(
    returns: np.ndarray,
    equity: np.ndarray,
    position: np.ndarray,
    ts_ms: np.ndarray,
    interval_ms: int,
) -> dict[str, float | int | None]:
    """The metrics of the module docstring; None where a metric is undefined (e.g. no spread
    of returns for a Sharpe ratio). ``ts_ms`` has one entry more than ``returns``: the
    starting bar's, then one per bar."""
    n = returns.size
    bars_per_year = MS_PER_YEAR / interval_ms
    years = n * interval_ms / MS_PER_YEAR
    total = float(equity[-1] - 1.0) if n else 0.0
    cagr = None
    if n and years > 0 and equity[-1] > 0:
        with np.errstate(over="ignore"):
            cagr = float(np.exp(np.log(equity[-1]) / years) - 1.0)
        cagr = cagr if np.isfinite(cagr) else None  # minutes compounded to a year overflow
    std = float(np.std(returns, ddof=1)) if n > 1 else None
    mean = float(np.mean(returns)) if n else None
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))) if n else None
    changes = np.abs(np.diff(np.concatenate(([0.0], position))))
    max_dd, dd_ms = _drawdown(equity, ts_ms) if n else (0.0, 0)

    def ratio(num: float | None, den: float | None) -> float | None:
        return None if num is None or not den else float(num / den * np.sqrt(bars_per_year))

    return {
        "total_return": total,
        "cagr": cagr,
        "annualized_volatility": None if std is None else float(std * np.sqrt(bars_per_year)),
        "sharpe": ratio(mean, std),
        "sortino": ratio(mean, downside),
        "max_drawdown": max_dd,
        "max_drawdown_duration_ms": dd_ms,
        "turnover": float(changes.sum()),
        "trades": int(np.count_nonzero(changes)),
        "bars": int(n),
    }


def backtest(
    strategy: str,
    ts_ms: ArrayLike,
    close: ArrayLike,
    *,
    interval_ms: int,
    params: Mapping[str, float] | None = None,
    fee_bp: float = 0.0,
    slippage_bp: float = 0.0,
    allow_short: bool = True,
) -> BacktestResult:
    """Run ``strategy`` (a key of STRATEGIES) over closes stamped ``ts_ms`` (bar open times,
    one bar every ``interval_ms``). The first close only sets the starting price."""
    try:
        rule = STRATEGIES[strategy]
    except KeyError:
        raise ValueError(f"unknown strategy {strategy!r}; one of {sorted(STRATEGIES)}") from None
    ts = np.asarray(ts_ms, dtype=np.int64)
    c = np.asarray(close, dtype=float)
    if c.size < 2 or ts.size != c.size:
        raise ValueError("need at least two closes, one timestamp each")
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ValueError("closes must be positive numbers")
    if fee_bp < 0 or slippage_bp < 0:
        raise ValueError("fees and slippage cannot be negative")
    target = rule(c, **(params or {}))
    if not allow_short:
        target = np.maximum(target, 0.0)
    position = target[:-1]  # decided at close t-1, held over bar t
    bar_return = c[1:] / c[:-1] - 1.0
    traded = np.abs(np.diff(np.concatenate(([0.0], position))))
    returns = position * bar_return - (fee_bp + slippage_bp) * BP * traded
    equity = np.cumprod(1.0 + returns)
    metrics = metrics_compute(returns, equity, position, ts, interval_ms)
    return BacktestResult(ts[1:], position, returns, equity, metrics)
