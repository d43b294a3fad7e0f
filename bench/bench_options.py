"""Throughput of analytics.options against baselines measured in the same run.

    .venv/bin/python bench/bench_options.py [--price-n 10000000] [--iv-n 1000000]

Prints options priced per second by ``bsm_price`` next to a bare numpy/scipy closed form
(target: at least 0.8 of it), and implied volatilities per second by ``implied_volatility``
next to ``py_vollib_vectorized`` when that package is importable (a bench-only environment:
it needs py_vollib==1.0.1 and py_lets_be_rational==1.0.1 pinned beside it), else next to a
scipy ``brentq`` loop timed on a subsample (target: twice py_vollib_vectorized's rate). The
accuracy of each implied-volatility method is printed too: speed at less accuracy is no win.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from analytics.options import bsm_greeks, bsm_price, implied_volatility


def market(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A book that looks like a listed options chain: mostly near the money, some wings."""
    rng = np.random.default_rng(seed)
    spot = np.full(n, 100.0)
    return {
        "kind": np.where(rng.random(n) < 0.5, "call", "put"),
        "spot": spot,
        "strike": spot * np.exp(rng.normal(0.0, 0.25, n)),
        "expiry": np.exp(rng.uniform(np.log(1 / 365), np.log(2.0), n)),
        "rate": rng.uniform(-0.01, 0.06, n),
        "dividend_yield": rng.uniform(0.0, 0.03, n),
        "volatility": rng.uniform(0.05, 1.5, n),
    }


def baseline_price(kind, spot, strike, expiry, rate, dividend_yield, volatility):
    """The textbook closed form, as bare as numpy and scipy.special allow."""
    sign = np.where(kind == "call", 1.0, -1.0)
    s = volatility * np.sqrt(expiry)
    d1 = (np.log(spot / strike) + (rate - dividend_yield) * expiry) / s + 0.5 * s
    d2 = d1 - s
    return sign * (
        spot * np.exp(-dividend_yield * expiry) * ndtr(sign * d1)
        - strike * np.exp(-rate * expiry) * ndtr(sign * d2)
    )


def best_of(function, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def brentq_iv(kind, price, spot, strike, expiry, rate, dividend_yield) -> float:
    def f(vol):
        return float(bsm_price(kind, spot, strike, expiry, rate, dividend_yield, vol)) - price

    try:
        return brentq(f, 1e-6, 20.0, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=200)
    except ValueError:
        return np.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--price-n", type=int, default=10_000_000)
    parser.add_argument("--iv-n", type=int, default=1_000_000)
    parser.add_argument("--brentq-n", type=int, default=2_000)
    args = parser.parse_args()

    book = market(args.price_n)
    ours = best_of(lambda: bsm_price(**book))
    base = best_of(lambda: baseline_price(**book))
    print(f"bsm_price          {args.price_n / ours:14,.0f} options/s")
    print(f"numpy closed form  {args.price_n / base:14,.0f} options/s")
    print(f"ratio              {base / ours:14.2f}   (target >= 0.8)")
    del book

    book = market(args.iv_n, seed=1)
    vol = book.pop("volatility")
    price = bsm_price(volatility=vol, **book)
    args_iv = (book["kind"], price, book["spot"], book["strike"], book["expiry"])
    args_iv += (book["rate"], book["dividend_yield"])
    result = implied_volatility(*args_iv)
    ours = best_of(lambda: implied_volatility(*args_iv))
    # Accuracy is judged where the price determines the volatility to 1e-12 (a price's own
    # rounding moves sigma by eps * price / (vega * sigma)); deep in-the-money short options
    # whose time value is lost in the price's last bits are not.
    vega = bsm_greeks(volatility=vol, **book).vega
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        posed = (price / (vega * vol) * np.finfo(float).eps < 1e-12) & (price > 1e-290)
    found = result.reason == ""
    error = np.abs(result.volatility[posed] / vol[posed] - 1)
    print(f"implied_volatility {args.iv_n / ours:14,.0f} options/s", end="")
    print(f"   max rel error {error.max():.1e} on {posed.mean():.1%} well-posed;", end="")
    print(f" {found.mean():.2%} inverted")

    try:
        import py_vollib_vectorized  # optional, bench-only dependency
    except ImportError:
        py_vollib_vectorized = None
    if py_vollib_vectorized is not None:
        flag = np.where(book["kind"] == "call", "c", "p")

        def theirs():
            return py_vollib_vectorized.vectorized_implied_volatility(
                price,
                book["spot"],
                book["strike"],
                book["expiry"],
                book["rate"],
                flag,
                q=book["dividend_yield"],
                model="black_scholes_merton",
                return_as="numpy",
            )

        other = np.asarray(theirs(), dtype=float)
        elapsed = best_of(theirs)
        err = np.nanmax(np.abs(other[posed] / vol[posed] - 1))
        print(
            f"py_vollib_vectorized {args.iv_n / elapsed:12,.0f} options/s   max rel error {err:.1e}"
        )
        print(f"ratio              {elapsed / ours:14.2f}   (target >= 2)")
    else:
        m = min(args.brentq_n, args.iv_n)
        start = time.perf_counter()
        other = np.array([brentq_iv(*(a[i] for a in args_iv)) for i in range(m)])
        elapsed = time.perf_counter() - start
        err = np.nanmax(np.abs(other[posed[:m]] / vol[:m][posed[:m]] - 1))
        print(
            f"brentq loop        {m / elapsed:14,.0f} options/s   max rel error {err:.1e}", end=""
        )
        print(f"   (on {m}; py_vollib_vectorized not installed)")
        print(f"ratio vs brentq    {(m / elapsed) and (args.iv_n / ours) / (m / elapsed):14.0f}")
    print(
        f"iv cost / price cost {ours / (best_of(lambda: bsm_price(volatility=vol, **book))):10.1f}"
    )


if __name__ == "__main__":
    main()
