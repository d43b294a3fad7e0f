"""Parameters of the simulated instruments (a plausible market, not a calibrated one)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InstrumentParams:
    symbol: str  # ccxt form
    price: float  # starting mid
    tick: float  # price tick
    size_step: float
    level_gap_ticks: int  # distance between book levels
    half_spread_ticks: int
    depth: int  # levels per side
    level_size: float  # mean resting size per level
    trade_rate: float  # market orders per second (Poisson), outside episodes
    trade_size: float  # mean market-order size
    # Heston variance, annualised: long-run variance, mean reversion, vol of vol, correlation.
    theta: float = 0.36
    kappa: float = 4.0
    xi: float = 0.9
    rho: float = -0.5
    # Informed-flow episodes: how often (per second), how long, how one-sided.
    episode_rate: float = 1 / 600
    episode_seconds: tuple[float, float] = (30.0, 90.0)
    episode_rate_multiplier: float = 3.0
    episode_side_probability: float = 0.85
    episode_drift_per_second: float = 4e-5
    impact: float = 0.1  # permanent impact, in level gaps per mean level size traded


DEFAULT_INSTRUMENTS: tuple[InstrumentParams, ...] = (
    InstrumentParams(
        symbol="BTC/USD",
        price=65_000.0,
        tick=0.01,
        size_step=0.0001,
        level_gap_ticks=50,
        half_spread_ticks=25,
        depth=25,
        level_size=0.6,
        trade_rate=4.0,
        trade_size=0.03,
        theta=0.36,
    ),
    InstrumentParams(
        symbol="ETH/USD",
        price=3_200.0,
        tick=0.01,
        size_step=0.001,
        level_gap_ticks=5,
        half_spread_ticks=3,
        depth=25,
        level_size=8.0,
        trade_rate=3.0,
        trade_size=0.4,
        theta=0.5,
    ),
    InstrumentParams(
        symbol="SOL/USD",
        price=150.0,
        tick=0.001,
        size_step=0.01,
        level_gap_ticks=5,
        half_spread_ticks=3,
        depth=25,
        level_size=150.0,
        trade_rate=2.0,
        trade_size=6.0,
        theta=0.7,
    ),
)
