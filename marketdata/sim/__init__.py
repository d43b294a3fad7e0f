"""The built-in simulated exchange `sim`: a deterministic, seeded market.

It is a feed like any other: it produces the same TradeRecord / BookUpdate /
TickerRecord values the ccxt feeds produce. See docs/marketdata.md for the model.
"""

from marketdata.sim.market import Episode, SimExchange
from marketdata.sim.params import DEFAULT_INSTRUMENTS, InstrumentParams

__all__ = ["DEFAULT_INSTRUMENTS", "Episode", "InstrumentParams", "SimExchange"]
