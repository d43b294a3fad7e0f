"""A throwaway PostgreSQL database per bench run, next to the one DATABASE_URL names,
and the market the benches load.

Benches never write into a database they did not create, and drop only what they made.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit


def _admin_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def database_create(url: str, *, prefix: str) -> str:
    """Create an empty database `<prefix><pid>` on the server of `url`; return its URL."""
    import psycopg

    name = f"{prefix}{os.getpid()}"
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def database_drop(url: str, *, prefix: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    assert name.startswith(prefix), name  # never drop anything the bench did not create
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sim_btc_usd():
    """The sim exchange's BTC-USD instrument, as the seed migration creates it."""
    from marketdata.models import Exchange, Instrument

    exchange, _ = Exchange.objects.get_or_create(id="sim", defaults={"name": "Simulated"})
    instrument, _ = Instrument.objects.get_or_create(
        exchange=exchange,
        ccxt_symbol="BTC/USD",
        defaults={
            "symbol": "BTC-USD",
            "base": "BTC",
            "quote": "USD",
            "price_precision": "0.01",
            "size_precision": "0.0001",
            "active": True,
        },
    )
    return instrument
