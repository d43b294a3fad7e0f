"""`python manage.py run_feeds [--shard N] [--exchange ID]`: the live feed runner process.

It lives in the project package, above every app, because it assembles the runner:
marketdata's streams with live analytics and alerts plugged in (quantsaas/feeds.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from quantsaas.feeds import feeds_run_live

logger = logging.getLogger("marketdata.feeds")


class Command(BaseCommand):
    help = "Stream trades, order books and tickers of one feed shard until SIGTERM or SIGINT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--shard", type=int, default=None, help="Feed shard (default: all).")
        parser.add_argument("--exchange", default=None, help="Only this exchange (e.g. sim).")

    def handle(self, *args: Any, shard: int | None, exchange: str | None, **options: Any) -> None:
        asyncio.run(self._run(shard=shard, exchange=exchange))

    async def _run(self, *, shard: int | None, exchange: str | None) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # A clean stop: streams close, buffered trades are flushed, health says so.
            loop.add_signal_handler(sig, stop.set)
        logger.info("run_feeds starting (shard=%s, exchange=%s)", shard, exchange or "all")
        await feeds_run_live(shard=shard, exchange=exchange, stop_event=stop)
