"""Issue 6's analytics benchmarks, each figure a ratio against a baseline timed in the same run.

    .venv/bin/python bench/analytics.py [--price-n 10000000] [--iv-n 1000000] [--flow-n 10000000]
                                        [--only price|iv|flow] [--no-vollib]

- bsm_price on 10M options against the textbook closed form in bare numpy/scipy (target >= 0.8).
- implied_volatility on 1M options against py_vollib_vectorized (target >= 2), run in a
  bench-only virtual environment that this script creates under var/ on first use with
  py_vollib==1.0.1 and py_lets_be_rational==1.0.1 pinned beside it (newer ones break it);
  if that cannot be built (no package index), against a scipy brentq loop on a subsample.
  The max relative error of each method is printed on the well-posed options: speed bought
  with digits is no win.
- VPIN over 10M trades (target under one second) and OFI over 10M book updates, each against
  one numpy pass that groups the same tape into its bars or intervals.

Machine-dependent: the compiled kernels use every core numba sees; the thread count is
printed next to the ratios (py_vollib_vectorized and the numpy baselines use one).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOLLIB_VENV = os.path.join(ROOT, "var", "bench-venv")
VOLLIB_PINS = ["py_vollib_vectorized==0.1.1", "py_vollib==1.0.1", "py_lets_be_rational==1.0.1"]
EPS = float(np.finfo(float).eps)


def best_of(function, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


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


def closed_form(kind, spot, strike, expiry, rate, dividend_yield, volatility):
    """The textbook closed form, as bare as numpy and scipy.special allow."""
    from scipy.special import ndtr

    sign = np.where(kind == "call", 1.0, -1.0)
    s = volatility * np.sqrt(expiry)
    d1 = (np.log(spot / strike) + (rate - dividend_yield) * expiry) / s + 0.5 * s
    d2 = d1 - s
    return sign * (
        spot * np.exp(-dividend_yield * expiry) * ndtr(sign * d1)
        - strike * np.exp(-rate * expiry) * ndtr(sign * d2)
    )


def engine() -> str:
    from analytics import options

    kernels = options._kernels()
    if kernels is None:
        return "numpy, 1 thread"
    import numba

    return f"numba, {numba.get_num_threads()} threads of {os.cpu_count()} cores"


def bench_price(n: int) -> None:
    from analytics.options import bsm_price

    start = time.perf_counter()
    bsm_price("call", 100.0, 100.0, 1.0, 0.0, 0.0, 0.2)  # loads the compiled kernels once
    load = time.perf_counter() - start
    book = market(n)
    ours = best_of(lambda: bsm_price(**book))
    base = best_of(lambda: closed_form(**book))
    print(f"bsm_price on {n:,} options ({engine()}; one-off kernel load {load:.1f} s)")
    print(f"  bsm_price            {n / ours:14,.0f} options/s")
    print(f"  numpy closed form    {n / base:14,.0f} options/s")
    print(f"  ratio                {base / ours:14.2f}   (target >= 0.8)")


def vollib_python() -> str | None:
    """The bench-only environment's interpreter, built on first use; None if it cannot be."""
    python = os.path.join(VOLLIB_VENV, "bin", "python")
    check = [python, "-c", "import py_vollib_vectorized"]
    if os.path.exists(python) and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"  building the bench-only environment in {os.path.relpath(VOLLIB_VENV, ROOT)} ...")
    try:
        subprocess.run([sys.executable, "-m", "venv", VOLLIB_VENV], check=True)
        pip = [python, "-m", "pip", "install", "--quiet", *VOLLIB_PINS]
        subprocess.run(pip, check=True, timeout=900)
        subprocess.run(check, check=True, capture_output=True)
    except (OSError, subprocess.SubprocessError) as error:
        print(f"  could not build it ({error})")
        return None
    return python


def vollib_worker(inputs: str, output: str) -> None:
    """Runs inside the bench-only environment: times py_vollib_vectorized on the saved book."""
    warnings.simplefilter("ignore")  # it warns once per option it cannot invert
    import py_vollib_vectorized

    data = np.load(inputs)

    def run(part=slice(None)):
        return py_vollib_vectorized.vectorized_implied_volatility(
            data["price"][part],
            data["spot"][part],
            data["strike"][part],
            data["expiry"][part],
            data["rate"][part],
            data["flag"][part],
            q=data["dividend_yield"][part],
            model="black_scholes_merton",
            return_as="numpy",
            on_error="ignore",
        )

    run(slice(0, 1000))  # numba compilation (or cache load) happens here, not in the timing
    elapsed = best_of(run)
    np.savez(output, volatility=np.asarray(run(), dtype=float), elapsed=elapsed)


def brentq_rate(args_iv, m: int) -> tuple[float, np.ndarray]:
    from scipy.optimize import brentq

    from analytics.options import bsm_price

    def one(kind, price, spot, strike, expiry, rate, q):
        def f(vol):
            return float(bsm_price(kind, spot, strike, expiry, rate, q, vol)) - price

        try:
            return brentq(f, 1e-6, 20.0, xtol=1e-15, rtol=4 * EPS, maxiter=200)
        except ValueError:
            return np.nan

    start = time.perf_counter()
    found = np.array([one(*(a[i] for a in args_iv)) for i in range(m)])
    return m / (time.perf_counter() - start), found


def bench_implied(n: int, use_vollib: bool, brentq_n: int = 2000) -> None:
    from analytics.options import bsm_greeks, bsm_price, implied_volatility

    book = market(n, seed=1)
    vol = book.pop("volatility")
    price = bsm_price(volatility=vol, **book)
    args_iv = (book["kind"], price, book["spot"], book["strike"], book["expiry"])
    args_iv += (book["rate"], book["dividend_yield"])
    result = implied_volatility(*args_iv)
    ours = n / best_of(lambda: implied_volatility(*args_iv))
    # Accuracy is judged where the price determines the volatility to 1e-12 (a price's own
    # rounding moves sigma by eps * price / (vega * sigma)); deep in-the-money short options
    # whose time value is lost in the price's last bits are not.
    vega = bsm_greeks(volatility=vol, **book).vega
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        posed = (price / (vega * vol) * EPS < 1e-12) & (price > 1e-290)
    error = np.abs(result.volatility[posed] / vol[posed] - 1).max()
    print(f"implied_volatility on {n:,} options ({engine()})")
    print(f"  implied_volatility   {ours:14,.0f} options/s   max rel error {error:.1e}", end="")
    print(f" on the {posed.mean():.1%} well-posed; {(result.reason == '').mean():.2%} inverted")

    python = vollib_python() if use_vollib else None
    if python is not None:
        with tempfile.TemporaryDirectory() as tmp:
            inputs, output = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
            flag = np.where(book["kind"] == "call", "c", "p")
            np.savez(inputs, price=price, flag=flag, **book)
            worker = [python, os.path.abspath(__file__), "--vollib-worker", inputs, output]
            subprocess.run(worker, check=True)
            theirs = np.load(output)
            rate = n / float(theirs["elapsed"])
            found = theirs["volatility"]
        label = "py_vollib_vectorized"
    else:
        rate, found = brentq_rate(args_iv, min(brentq_n, n))
        label = f"brentq loop (on {found.size:,})"
    mask = posed[: found.size]
    err = np.nanmax(np.abs(found[mask] / vol[: found.size][mask] - 1))
    missing = np.isnan(found[mask]).mean()
    print(f"  {label:20} {rate:14,.0f} options/s   max rel error {err:.1e}", end="")
    print(f", {missing:.2%} of the well-posed not inverted")
    print(
        f"  ratio                {ours / rate:14.2f}   (target >= 2 against py_vollib_vectorized)"
    )


def tape(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ts = 1_764_000_000_000 + np.cumsum(rng.integers(0, 20, n))
    price = 64_000 * np.exp(np.cumsum(rng.normal(0, 2e-5, n)))
    mid = np.round(price, 1)
    return {
        "ts": ts,
        "price": price,
        "size": rng.exponential(0.05, n),
        "bid": mid - 0.05,
        "ask": mid + 0.05,
        "bid_sz": rng.exponential(1.0, n),
        "ask_sz": rng.exponential(1.0, n),
    }


def group_once(ts: np.ndarray, values: np.ndarray, width_ms: int) -> np.ndarray:
    """The baseline: one numpy pass that sums a column per epoch-aligned bar."""
    bar = ts // width_ms
    first = np.concatenate(([0], np.flatnonzero(bar[1:] != bar[:-1]) + 1))
    return np.add.reduceat(values, first)


def bench_flow(n: int) -> None:
    from analytics.ofi import ofi
    from analytics.vpin import vpin

    t = tape(n)
    bucket = t["size"].sum() / 5000
    buckets = []

    def run_vpin():
        buckets.append(vpin(t["ts"], t["price"], t["size"], bucket_volume=bucket, window=50))

    ours = best_of(run_vpin)
    base = best_of(lambda: group_once(t["ts"], t["size"], 60_000))
    print(f"VPIN over {n:,} trades: {ours:.3f} s (target < 1 s), {buckets[0].ts_ms.size} buckets")
    print(f"  one numpy pass into 1-minute bars {base:.3f} s; VPIN costs {ours / base:.1f} of them")

    intervals = []

    def run_ofi():
        intervals.append(ofi(t["ts"], t["bid"], t["bid_sz"], t["ask"], t["ask_sz"], 1000))

    ours = best_of(run_ofi)
    base = best_of(lambda: group_once(t["ts"], t["bid_sz"], 1000))
    print(f"OFI over {n:,} updates: {ours:.3f} s ({n / ours:,.0f}/s), {intervals[0].ofi.size} s")
    print(f"  one numpy pass into 1-second intervals {base:.3f} s; OFI costs {ours / base:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--price-n", type=int, default=10_000_000)
    parser.add_argument("--iv-n", type=int, default=1_000_000)
    parser.add_argument("--flow-n", type=int, default=10_000_000)
    parser.add_argument("--only", choices=["price", "iv", "flow"])
    parser.add_argument("--no-vollib", action="store_true", help="compare with brentq instead")
    parser.add_argument("--vollib-worker", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.vollib_worker:
        vollib_worker(*args.vollib_worker)
        return
    sys.path.insert(0, ROOT)
    if args.only in (None, "price"):
        bench_price(args.price_n)
    if args.only in (None, "iv"):
        bench_implied(args.iv_n, use_vollib=not args.no_vollib)
    if args.only in (None, "flow"):
        bench_flow(args.flow_n)


if __name__ == "__main__":
    main()
