"""Where the simulated market stands at any moment, without simulating up to it.

Time is cut into segments of SEGMENT_MS. Each instrument's log price at the start of
segment k (its anchor) is a mean-reverting random walk (Ornstein-Uhlenbeck around the
instrument's reference price) written as a weighted sum of the last ANCHOR_TERMS
normal draws, and draw i comes from a generator keyed by (seed, symbol, i // BLOCK).
So an anchor is a pure function of (seed, instrument, segment): any process, at any
time, computes the same one, and the fine simulation of a segment (market.py) runs
from its anchor towards the next one. That is what lets a restarted feed continue
the same market and lets the REST history regenerate any past range exactly.
"""

from __future__ import annotations

import math
import zlib
from functools import lru_cache

import numpy as np

from marketdata.sim.params import InstrumentParams

SEGMENT_MS = 600_000  # 10 minutes: a restart re-simulates at most this much
SECONDS_PER_YEAR = 365 * 86_400
REVERSION_DAYS = 14.0  # mean reversion of the anchor path: prices stay plausible for years
ANCHOR_TERMS = 16_384  # weights decay to e^-8 over the window
BLOCK = 4096
# Generator streams: segment draws and anchor draws never share a generator.
SEGMENT_STREAM = 1
ANCHOR_STREAM = 2


def symbol_key(symbol: str) -> int:
    return zlib.crc32(symbol.encode())


def segment_of(ts_ms: int) -> int:
    return ts_ms // SEGMENT_MS


def segment_rng(*, seed: int, symbol: str, segment: int) -> np.random.Generator:
    return np.random.default_rng([seed, symbol_key(symbol), SEGMENT_STREAM, segment])


@lru_cache(maxsize=256)
def _block(seed: int, key: int, block: int) -> np.ndarray:
    return np.random.default_rng([seed, key, ANCHOR_STREAM, block]).standard_normal(BLOCK)


@lru_cache(maxsize=16)
def _weights(theta: float) -> tuple[np.ndarray, float]:
    """Weights of draws k-1, k-2, ... in anchor k (oldest first), and the step's scale."""
    decay = math.exp(-SEGMENT_MS / (REVERSION_DAYS * 86_400_000))
    # Per-segment variance matching the Heston long-run variance, so the coarse path
    # moves as much as the fine one does on average.
    scale = math.sqrt(theta * SEGMENT_MS / 1000 / SECONDS_PER_YEAR)
    weights = decay ** np.arange(ANCHOR_TERMS - 1, -1, -1, dtype=float)
    return weights, scale


@lru_cache(maxsize=1024)
def anchor_log_price(*, seed: int, params: InstrumentParams, segment: int) -> float:
    """The instrument's log mid at the start of `segment`."""
    key = symbol_key(params.symbol)
    first = segment - ANCHOR_TERMS
    blocks = range(first // BLOCK, (segment - 1) // BLOCK + 1)
    draws = np.concatenate([_block(seed, key, b) for b in blocks])
    offset = first - blocks[0] * BLOCK
    weights, scale = _weights(params.theta)
    walk = float(weights @ draws[offset : offset + ANCHOR_TERMS])
    return math.log(params.price) + scale * walk
