"""Stored history for the browser tests' server: what a product running for a while holds.

Trades, 1-minute candles and a book snapshot every half minute of simulated `sim`
markets over the last `minutes` (marketdata.sim.history), so a delayed plan (15
minutes) has its whole view stored. Run inside the server's environment:
`manage.py shell -c "..."` (see conftest.py).
"""

from __future__ import annotations

from marketdata.sim.history import sim_history_load


def history_load(*, minutes: int, seed: int = 0) -> None:
    """The live feed's own past (same seed): the tape joins what it prints next."""
    sim_history_load(minutes=minutes, seed=seed, books=True)
