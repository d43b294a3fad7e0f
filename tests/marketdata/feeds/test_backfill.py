"""Backfill through the real ccxt REST code against the fake Binance: chunked, resumable."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from marketdata.feeds.backfill import backfill_run
from marketdata.feeds.runner import ClientFactory
from marketdata.models import Candle1m, Trade
from tests.marketdata.feeds.conftest import tape_rows

pytestmark = pytest.mark.django_db(transaction=True)

SYMBOL = "BTCUSDT"


def _stored(instrument) -> list[tuple]:
    return list(
        Trade.objects.filter(instrument=instrument)
        .order_by("ts", "id")
        .values_list("trade_id", "price", "size", "side")
    )


class _FailsAfter:
    """Wraps a client so the connection 'dies' after a number of REST pages."""

    def __init__(self, client, pages: int):
        self.client, self.pages = client, pages

    def __getattr__(self, name):
        return getattr(self.client, name)

    async def fetch_trades(self, *args, **kwargs):
        if self.pages == 0:
            raise ConnectionError("network down")
        self.pages -= 1
        return await self.client.fetch_trades(*args, **kwargs)


async def test_backfill_stores_the_exchange_tape_in_chunks_and_resumes(fake_binance, binance_btc):
    fake_binance.emit_trades(SYMBOL, 2500)
    tape = fake_binance.published_tape(SYMBOL)
    since, until = tape[0].time, tape[-1].time + 1

    client = await ClientFactory()("binance")
    async with client:
        with pytest.raises(ConnectionError):
            await backfill_run(
                instrument=binance_btc,
                since_ms=since,
                until_ms=until,
                client=_FailsAfter(client, pages=2),
                kinds=("trades",),
            )
    partial = await _async(_stored)(binance_btc)
    assert 0 < len(partial) < len(tape)

    pages_before = len([r for r in fake_binance.requests if "aggTrades" in r])
    client = await ClientFactory()("binance")
    async with client:
        result = await backfill_run(
            instrument=binance_btc, since_ms=since, until_ms=until, client=client
        )
    pages_after = len([r for r in fake_binance.requests if "aggTrades" in r])

    assert result.resumed_from is not None and result.resumed_from > since
    assert pages_after - pages_before < 3  # it did not start over
    assert await _async(_stored)(binance_btc) == tape_rows(tape)
    candles = await _async(lambda: Candle1m.objects.filter(instrument=binance_btc).count())()
    minutes = {t.time - t.time % 60_000 for t in tape}
    assert candles == len(minutes)


def test_backfill_command_reports_progress_and_result(fake_binance, binance_btc):
    fake_binance.emit_trades(SYMBOL, 300)
    tape = fake_binance.published_tape(SYMBOL)
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "backfill",
        "--exchange=binance",
        "--symbol=BTC-USDT",
        f"--since={tape[0].time}",
        f"--until={tape[-1].time + 1}",
        "--kind=trades",
        stdout=out,
        stderr=err,
    )
    assert "300 new trades" in out.getvalue()
    assert _stored(binance_btc) == tape_rows(tape)


def _async(fn):
    from asgiref.sync import sync_to_async

    return sync_to_async(fn)
