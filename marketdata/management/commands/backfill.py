"""`python manage.py backfill --exchange binance --symbol BTC/USDT --since ... [--until ...]`.

Chunked and resumable: run the same command again after an interruption and it
continues where it stopped (see marketdata.feeds.backfill).
"""

from __future__ import annotations

import asyncio
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from marketdata.feeds.backfill import BackfillResult, backfill_run, time_parse_ms
from marketdata.feeds.runner import ClientFactory
from marketdata.models import Instrument
from marketdata.symbols import symbol_from_path
from quantsaas.timeutil import MINUTE_MS, now_ms


class Command(BaseCommand):
    help = "Backfill 1-minute candles and trades of one instrument through the exchange's REST API."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--exchange", required=True)
        parser.add_argument("--symbol", required=True, help="BTC/USDT or BTC-USDT")
        parser.add_argument("--since", required=True, help="ISO 8601 or epoch milliseconds")
        parser.add_argument("--until", default=None, help="ISO 8601 or epoch ms (default: now)")
        parser.add_argument(
            "--kind", choices=["candles", "trades", "both"], default="both", help="What to fetch"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        symbol = options["symbol"]
        symbol = symbol if "/" in symbol else symbol_from_path(symbol)
        instrument = Instrument.objects.filter(
            exchange_id=options["exchange"], ccxt_symbol=symbol
        ).first()
        if instrument is None:
            raise CommandError(f"Unknown instrument {options['exchange']} {symbol}.")
        try:
            since = time_parse_ms(options["since"])
            until = time_parse_ms(options["until"]) if options["until"] else now_ms()
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if until <= since:
            raise CommandError("--until must be after --since.")
        kinds: tuple[str, ...] = (
            ("candles", "trades") if options["kind"] == "both" else (options["kind"],)
        )
        result = asyncio.run(self._run(instrument, since, until, kinds))
        if result.resumed_from:
            self.stdout.write(f"Resumed from {result.resumed_from}.")
        self.stdout.write(
            self.style.SUCCESS(
                f"Backfilled {instrument}: {result.trades} new trades, {result.candles} candles."
            )
        )

    async def _run(
        self, instrument: Instrument, since: int, until: int, kinds: tuple[str, ...]
    ) -> BackfillResult:
        factory = ClientFactory()
        client = await factory(instrument.exchange_id)
        total = (until - since) // MINUTE_MS
        with tqdm(total=total, unit="min", desc=f"{instrument} {'+'.join(kinds)}") as bar:

            def progress(cursor: int) -> None:
                bar.n = min(total, max(0, (cursor - since) // MINUTE_MS))
                bar.refresh()

            async with client:
                return await backfill_run(
                    instrument=instrument,
                    since_ms=since,
                    until_ms=until,
                    client=client,
                    kinds=kinds,
                    progress=progress,
                )
