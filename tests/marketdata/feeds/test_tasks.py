"""The periodic market-data jobs: candle finalisation (roll-up) and retention."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from marketdata import tasks
from marketdata.models import Candle1m, Trade
from marketdata.records import TradeRecord
from marketdata.services import candles_rebuild, trades_ingest
from quantsaas.timeutil import MINUTE_MS, dt_to_ms, now_ms

pytestmark = pytest.mark.django_db


def _trades(instrument, start: int, count: int) -> list[TradeRecord]:
    return [
        TradeRecord(
            exchange=instrument.exchange_id,
            symbol=instrument.ccxt_symbol,
            trade_id=f"t{start}-{i}",
            ts=start + i * 1000,
            price=100.0 + i,
            size=1.0,
            side="buy",
        )
        for i in range(count)
    ]


def test_candles_left_open_are_finalised_from_the_tape(binance_btc):
    minute = now_ms() - 10 * MINUTE_MS
    minute -= minute % MINUTE_MS
    trades_ingest(records=_trades(binance_btc, minute, 5))
    # As the live runner leaves it when it stops inside the minute:
    candles_rebuild(instrument=binance_btc, start_ms=minute, end_ms=minute + 1, final_before=minute)
    assert Candle1m.objects.get(instrument=binance_btc).is_final is False

    tasks.candles_finalize()

    candle = Candle1m.objects.get(instrument=binance_btc)
    assert candle.is_final is True
    assert (candle.open, candle.close, candle.trade_count) == (100.0, 104.0, 5)


def test_retention_deletes_only_trades_older_than_the_window(binance_btc, settings):
    settings.MARKETDATA_TRADE_RETENTION_DAYS = 7
    old = dt_to_ms(timezone.now() - timedelta(days=8))
    recent = now_ms() - MINUTE_MS
    trades_ingest(records=_trades(binance_btc, old, 3) + _trades(binance_btc, recent, 2))

    deleted = tasks.marketdata_retention()

    assert deleted["trades"] == 3
    assert Trade.objects.filter(instrument=binance_btc).count() == 2
