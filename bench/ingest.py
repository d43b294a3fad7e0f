"""Trade ingest throughput: the feed runner's normalise-and-store path vs a raw COPY.

    DATABASE_URL=postgres://... REDIS_URL=redis://... python bench/ingest.py [--trades N]

Both sides write the same rows into the real trades table (with its unique
constraint and indexes) in the same run: ours goes from exchange-shaped
(ccxt) dicts through normalisation, the trade writer's batching and the
idempotent COPY + INSERT ... ON CONFLICT; the baseline COPYs finished rows
straight into the table. Prints trades/s for each and the ratio (target >= 0.5).
Bench rows live under a throwaway exchange `bench` and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantsaas.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")

import django

django.setup()

from django.db import connection  # noqa: E402

from marketdata.feeds.ccxt_client import CcxtFeedClient  # noqa: E402
from marketdata.feeds.config import ExchangeConfig  # noqa: E402
from marketdata.feeds.writer import TradeWriter  # noqa: E402
from marketdata.models import Exchange, Instrument, Trade  # noqa: E402
from quantsaas.timeutil import now_ms  # noqa: E402


def _instrument(symbol: str) -> Instrument:
    exchange, _ = Exchange.objects.get_or_create(id="bench", defaults={"name": "Bench"})
    base, quote = symbol.split("/")
    instrument, _ = Instrument.objects.get_or_create(
        exchange=exchange,
        ccxt_symbol=symbol,
        defaults={
            "symbol": f"{base}-{quote}",
            "base": base,
            "quote": quote,
            "price_precision": Decimal("0.01"),
            "size_precision": Decimal("0.0001"),
            "active": False,  # never streamed by a runner
        },
    )
    return instrument


def _ccxt_trades(n: int, start: int) -> list[dict]:
    rng = random.Random(1)
    price = 64000.0
    out = []
    for i in range(n):
        price *= 1 + rng.gauss(0, 0.0002)
        out.append(
            {
                "id": str(10_000_000 + i),
                "timestamp": start + i * 3,
                "price": round(price, 2),
                "amount": round(rng.uniform(0.0001, 1), 4),
                "side": "buy" if rng.random() < 0.5 else "sell",
            }
        )
    return out


async def ours(raw: list[dict], instrument: Instrument) -> float:
    client = CcxtFeedClient.__new__(CcxtFeedClient)  # normalisation only: no connection
    client.exchange = "bench"
    client.config = ExchangeConfig(id="bench")
    writer = TradeWriter(instruments={("bench", instrument.ccxt_symbol): instrument})
    started = time.perf_counter()
    received = now_ms()
    for i in range(0, len(raw), 500):  # websocket-sized batches, as streams hand them over
        writer.add([client._trade(instrument.ccxt_symbol, t, received) for t in raw[i : i + 500]])
    await writer.flush()
    elapsed = time.perf_counter() - started
    assert writer.stored == len(raw), writer.stored
    return len(raw) / elapsed


def raw_copy(raw: list[dict], instrument: Instrument) -> float:
    from quantsaas.timeutil import ms_to_dt

    received = ms_to_dt(now_ms())
    started = time.perf_counter()
    with (
        connection.cursor() as cursor,
        cursor.copy(
            "COPY marketdata_trade (instrument_id, trade_id, ts, received_ts, price, size, side) "
            "FROM STDIN"
        ) as copy,
    ):
        for t in raw:
            copy.write_row(
                (
                    instrument.pk,
                    t["id"],
                    ms_to_dt(t["timestamp"]),
                    received,
                    t["price"],
                    t["amount"],
                    t["side"],
                )
            )
    elapsed = time.perf_counter() - started
    return len(raw) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=200_000)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("bench/ingest.py needs PostgreSQL: set DATABASE_URL (and REDIS_URL).")
    ours_instr, copy_instr = _instrument("BTC/USD"), _instrument("ETH/USD")
    raw = _ccxt_trades(args.trades, now_ms() - args.trades * 3)
    try:
        Trade.objects.filter(instrument__in=[ours_instr, copy_instr]).delete()
        baseline = raw_copy(raw, copy_instr)
        ours_rate = asyncio.run(ours(raw, ours_instr))
    finally:
        Trade.objects.filter(instrument__in=[ours_instr, copy_instr]).delete()
        Instrument.objects.filter(exchange_id="bench").delete()
        Exchange.objects.filter(id="bench").delete()
    ratio = ours_rate / baseline
    print(f"trades:                       {args.trades}")
    print(f"raw COPY:                     {baseline:12,.0f} trades/s")
    print(f"feed normalise-and-store:     {ours_rate:12,.0f} trades/s")
    print(
        f"ratio (target >= 0.5):        {ratio:12.2f}  {'OK' if ratio >= 0.5 else 'BELOW TARGET'}"
    )


if __name__ == "__main__":
    main()
