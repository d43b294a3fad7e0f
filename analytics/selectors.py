"""Reads for analytics. Backtests are tenant data: every read takes the organization.
Stored OFI and VPIN are derived from global market data and take the instrument."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from django.db import connection
from django.db.models import QuerySet, Sum

from accounts.models import Organization
from analytics.models import Backtest, OfiSecond, VpinBucket
from marketdata.models import Candle1m, Instrument, Trade
from quantsaas.timeutil import dt_to_ms, dt_to_us, ms_to_dt

DAY_MS = 86_400_000


# --- backtests (tenant data) --------------------------------------------------------------
def backtests_list(*, organization: Organization) -> QuerySet[Backtest]:
    return Backtest.objects.filter(organization=organization).order_by("-created_at", "-pk")


def backtest_get(*, organization: Organization, backtest_id: int) -> Backtest | None:
    """None also for another organization's job: callers answer 404 either way."""
    return Backtest.objects.filter(organization=organization, pk=backtest_id).first()


def backtests_since_count(*, organization: Organization, since: datetime) -> int:
    """Jobs charged to the allowance: one whose worker died is not (services)."""
    return Backtest.objects.filter(
        organization=organization, created_at__gte=since, charged=True
    ).count()


# --- stored live analytics ----------------------------------------------------------------
def _bucket_sql(interval_ms: int) -> str:
    if connection.vendor == "postgresql":
        epoch_ms = "(EXTRACT(EPOCH FROM ts) * 1000)::bigint"
    else:
        epoch_ms = "(CAST(strftime('%%s', ts) AS INTEGER) * 1000)"
    return f"({epoch_ms} / {int(interval_ms)}) * {int(interval_ms)}"


def ofi_between(
    *, instrument: Instrument, interval_ms: int, start_ms: int, end_ms: int, limit: int
) -> list[tuple[int, float, int]]:
    """(interval start ms, OFI, book updates) of the stored seconds in [start, end), summed
    per epoch-aligned interval (a multiple of a second), oldest first.

    Summing seconds is exact to the definition: e_n depends only on the update before it,
    so the OFI of an interval is the sum of the OFI of its seconds.
    """
    if interval_ms == 1_000:
        rows = (
            OfiSecond.objects.filter(
                instrument=instrument, ts__gte=ms_to_dt(start_ms), ts__lt=ms_to_dt(end_ms)
            )
            .order_by("ts")
            .values_list("ts", "ofi", "updates")[:limit]
        )
        return [(dt_to_ms(ts), ofi, updates) for ts, ofi, updates in rows]
    table = OfiSecond._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    sql = f"""
        SELECT {_bucket_sql(interval_ms)} AS bucket, SUM(ofi), SUM(updates)
        FROM {table}
        WHERE instrument_id = %s AND ts >= %s AND ts < %s
        GROUP BY 1 ORDER BY 1 LIMIT %s
    """  # noqa: S608 - table name and interval are ours, values are parameters
    params = [instrument.pk, adapt(ms_to_dt(start_ms)), adapt(ms_to_dt(end_ms)), limit]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(int(b), float(o), int(u)) for b, o, u in cursor.fetchall()]


def vpin_stored_latest_params(*, instrument: Instrument) -> tuple[float, int, int] | None:
    """(bucket volume, window, bar ms) the feed runner used most recently, or None."""
    return (
        VpinBucket.objects.filter(instrument=instrument)
        .order_by("-ts", "-pk")
        .values_list("bucket_volume", "window", "bar_ms")
        .first()
    )


def vpin_stored_between(
    *,
    instrument: Instrument,
    bucket_volume: float,
    window: int,
    start_ms: int,
    end_ms: int,
    limit: int,
) -> list[tuple[int, float, float, float | None, float | None]]:
    """(end ts ms, buy volume, sell volume, VPIN, sigma) of stored buckets, oldest first."""
    rows = (
        VpinBucket.objects.filter(
            instrument=instrument,
            bucket_volume=bucket_volume,
            window=window,
            ts__gte=ms_to_dt(start_ms),
            ts__lt=ms_to_dt(end_ms),
        )
        .order_by("ts", "pk")
        .values_list("ts", "buy_volume", "sell_volume", "vpin", "sigma")[:limit]
    )
    return [(dt_to_ms(ts), buy, sell, vpin, sigma) for ts, buy, sell, vpin, sigma in rows]


def trades_arrays(
    *, instrument: Instrument, start_ms: int, end_ms: int, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Timestamps (ms), prices and sizes of up to `limit` trades in [start, end), in order."""
    rows = list(
        Trade.objects.filter(
            instrument=instrument, ts__gte=ms_to_dt(start_ms), ts__lt=ms_to_dt(end_ms)
        )
        .order_by("ts", "id")
        .values_list("ts", "price", "size")[:limit]
    )
    ts = np.fromiter((dt_to_us(row[0]) // 1000 for row in rows), dtype=np.int64, count=len(rows))
    price = np.fromiter((row[1] for row in rows), dtype=float, count=len(rows))
    size = np.fromiter((row[2] for row in rows), dtype=float, count=len(rows))
    return ts, price, size


def candle_closes_recent(*, instrument: Instrument, before_ms: int, count: int) -> list[float]:
    """Closes of the last `count` stored 1-minute candles before `before_ms`, oldest first
    (what seeds the live VPIN's trailing sigma)."""
    rows = (
        Candle1m.objects.filter(instrument=instrument, ts__lt=ms_to_dt(before_ms))
        .order_by("-ts")
        .values_list("close", flat=True)[:count]
    )
    return list(reversed(rows))


def daily_volume(*, instrument: Instrument, before_ms: int) -> float:
    """Base volume of the stored 1-minute candles of the 24 hours before `before_ms`."""
    total = Candle1m.objects.filter(
        instrument=instrument,
        ts__gte=ms_to_dt(before_ms - DAY_MS),
        ts__lt=ms_to_dt(before_ms),
    ).aggregate(total=Sum("volume"))["total"]
    return float(total or 0.0)
