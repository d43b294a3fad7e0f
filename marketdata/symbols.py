"""Symbol spellings: ccxt's "BTC/USDT" inside, "BTC-USDT" in URLs and channel names."""

from __future__ import annotations


def symbol_to_path(ccxt_symbol: str) -> str:
    return ccxt_symbol.replace("/", "-").upper()


def symbol_from_path(path_symbol: str) -> str:
    return path_symbol.upper().replace("-", "/", 1)
