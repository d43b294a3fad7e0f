"""Which exchanges the feed runner knows, and how to talk to each.

binance, coinbase and kraken (ccxt ids) and the built-in ``sim`` are
configured out of the box. Per-exchange quirks live here, not in the stream
code: e.g. binance trades are watched on the aggregate-trade stream because
its REST history (``aggTrades``, used for gap repair) numbers aggregates, so
the live and the repaired trades share one id space and duplicates can be
dropped by id. docs/marketdata.md lists every venue's quirks.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ExchangeConfig:
    id: str
    # ccxt's options and call parameters: open, as ccxt takes them (per exchange).
    ccxt_options: dict[str, Any] = field(default_factory=dict)
    watch_trades_params: dict[str, Any] = field(default_factory=dict)
    watch_ticker_params: dict[str, Any] = field(default_factory=dict)
    # Gap repair pages by trade id (exact) when the exchange supports it, else by time.
    repair_from_id_param: str | None = None
    # Some REST trade endpoints answer at most this window after `since`.
    fetch_trades_window_ms: int | None = None
    book_depth: int = 50  # what the stream and REST serve at most (streaming/books.py)
    # Depth asked for on subscribe, for venues that only offer fixed depths (Kraken).
    book_subscribe_depth: int | None = None
    # How a broken book is rebuilt: "resubscribe" (ccxt does it on the same connection) or
    # "reconnect" (a fresh connection, whose subscription starts with a snapshot).
    book_resync: str = "resubscribe"
    # REST trade history: "since" (oldest first from a time), "window" (the newest `limit`
    # of a [start, end] window, walked back until complete: Coinbase), "since_ns"
    # (nanosecond `since`, oldest first: Kraken).
    fetch_trades_style: str = "since"
    # The venue prints the maker's side; the aggressor is the other one (Coinbase).
    trade_side_is_maker: bool = False
    # A stream with no message for this long is restarted by the watchdog.
    quiet_seconds: float = 60.0
    # Overrides of ccxt's urls["api"]: a url, or a dict of them, per key (FEED_URL_OVERRIDES).
    urls: dict[str, Any] = field(default_factory=dict)


_NO_SIDE_CALLS = {"fetchCurrencies": False, "fetchMargins": False}

EXCHANGES: dict[str, ExchangeConfig] = {
    "sim": ExchangeConfig(id="sim", quiet_seconds=15.0),
    "binance": ExchangeConfig(
        id="binance",
        ccxt_options={
            **_NO_SIDE_CALLS,
            "fetchMarkets": {"types": ["spot"]},
            "adjustForTimeDifference": False,
        },
        watch_trades_params={"name": "aggTrade"},
        watch_ticker_params={"name": "ticker"},  # the full ticker carries bid/ask
        repair_from_id_param="fromId",
        fetch_trades_window_ms=3_600_000,
    ),
    "coinbase": ExchangeConfig(
        id="coinbase",
        ccxt_options=_NO_SIDE_CALLS,
        book_resync="reconnect",  # a sequence_num gap is only healed by a new subscription
        fetch_trades_style="window",
        fetch_trades_window_ms=900_000,
        trade_side_is_maker=True,
    ),
    "kraken": ExchangeConfig(
        id="kraken",
        ccxt_options=_NO_SIDE_CALLS,
        book_subscribe_depth=100,  # Kraken offers 10, 25, 100, 500, 1000; we keep 50
        book_resync="reconnect",  # a new connection's subscription surely starts afresh
        fetch_trades_style="since_ns",
    ),
}


def exchange_config(exchange_id: str) -> ExchangeConfig:
    """The configuration for an exchange; unknown ccxt ids get safe defaults.

    ``FEED_URL_OVERRIDES`` (JSON, ``{"binance": {"public": ..., "ws": {...}}}``)
    points an exchange's ``urls['api']`` elsewhere: a staging mirror, or a
    local fake exchange in tests of the real process.
    """
    config = EXCHANGES.get(exchange_id) or ExchangeConfig(
        id=exchange_id, ccxt_options=_NO_SIDE_CALLS
    )
    overrides = json.loads(os.environ.get("FEED_URL_OVERRIDES") or "{}").get(exchange_id)
    if overrides:
        config = ExchangeConfig(**{**config.__dict__, "urls": overrides})
    return config
