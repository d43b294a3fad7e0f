"""Throughput of analytics.ofi and analytics.vpin on synthetic tapes.

    .venv/bin/python bench/bench_flow.py [--n 10000000]

Targets (issue 6): VPIN over 10 million trades in under one second; OFI over 10 million
book updates is reported.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from analytics.ofi import ofi
from analytics.vpin import vpin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000_000)
    args = parser.parse_args()
    n = args.n
    rng = np.random.default_rng(0)
    ts = 1_764_000_000_000 + np.cumsum(rng.integers(0, 20, n))
    price = 64_000 * np.exp(np.cumsum(rng.normal(0, 2e-5, n)))
    size = rng.exponential(0.05, n)

    start = time.perf_counter()
    result = vpin(ts, price, size, bucket_volume=size.sum() / 5000, window=50)
    elapsed = time.perf_counter() - start
    print(
        f"vpin  {n:,} trades in {elapsed:.3f} s ({n / elapsed:,.0f}/s), {result.ts_ms.size} buckets"
    )

    mid = np.round(price, 1)
    bid, ask = mid - 0.05, mid + 0.05
    bid_sz, ask_sz = rng.exponential(1.0, n), rng.exponential(1.0, n)
    start = time.perf_counter()
    series = ofi(ts, bid, bid_sz, ask, ask_sz, 1000)
    elapsed = time.perf_counter() - start
    print(
        f"ofi   {n:,} updates in {elapsed:.3f} s ({n / elapsed:,.0f}/s), {series.ofi.size} seconds"
    )


if __name__ == "__main__":
    main()
