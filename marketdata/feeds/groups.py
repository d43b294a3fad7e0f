"""Channels group names for live market data: ``<kind>.<exchange>.<SYMBOL>`` (docs/api.md).

Channels accepts group names of fewer than 100 ASCII alphanumerics, hyphens,
underscores and periods. Public symbols are ``BASE-QUOTE``; anything else a
ccxt symbol may carry (``:`` of derivatives, ``/``, spaces) is mapped to ``_``
so a subscription can never raise inside the channel layer. The stream
consumer must build names with :func:`channel_group` too, so both sides agree.
"""

from __future__ import annotations

import hashlib
import re

from marketdata.symbols import symbol_to_path

KINDS = ("trades", "book", "ticker", "candles_1m", "ofi", "vpin")
_INVALID = re.compile(r"[^A-Za-z0-9\-_]")
_MAX_LENGTH = 99  # channels: len(name) < 100


def channel_name(kind: str, exchange: str, symbol: str) -> str:
    """The public channel name for a ccxt or public symbol, e.g. ``trades.sim.BTC-USD``."""
    return f"{kind}.{exchange}.{symbol_to_path(symbol)}"


def channel_group(channel: str) -> str:
    """Map a public channel name to a valid Channels group name (stable, collision-safe)."""
    kind, _, rest = channel.partition(".")
    exchange, _, symbol = rest.partition(".")
    name = ".".join(_INVALID.sub("_", part) for part in (kind, exchange, symbol))
    if len(name) > _MAX_LENGTH:
        digest = hashlib.sha256(channel.encode()).hexdigest()[:12]
        name = f"{name[: _MAX_LENGTH - 13]}_{digest}"
    return name


def group_for(kind: str, exchange: str, symbol: str) -> str:
    return channel_group(channel_name(kind, exchange, symbol))
