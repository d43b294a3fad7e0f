"""Reads of market data. Market data is global, so these take no organization; what a
caller may read (history depth) is checked by the API layer against its plan."""

from __future__ import annotations

import logging
from typing import Protocol, TypeVar

from django.db import connection
from django.db.models import F, Max, Min, Q, QuerySet, Sum
from redis import RedisError

from marketdata.candles import INTERVALS_MS
from marketdata.live import live_book_get, live_ticker_get
from marketdata.models import BookSnapshot, Candle1m, Exchange, Instrument, Ticker, Trade
from marketdata.records import BookUpdate, TickerRecord
from quantsaas.cache import LocalCache
from quantsaas.timeutil import MINUTE_MS, dt_to_ms, dt_to_us, ms_to_dt, us_to_dt

logger = logging.getLogger(__name__)

# (row id, trade id, ts µs, price, size, side)
TradeRow = tuple[int, str, int, float, float, str]
# (open time ms, open, high, low, close, volume, buy volume, trades, all final)
CandleRow = tuple[int, float, float, float, float, float, float, int, bool]


def exchanges_list() -> QuerySet[Exchange]:
    return Exchange.objects.order_by("id")


def exchange_get(*, exchange_id: str) -> Exchange | None:
    return Exchange.objects.filter(id=exchange_id).first()


def instruments_list(*, exchange: Exchange | None = None) -> QuerySet[Instrument]:
    instruments = Instrument.objects.order_by("exchange_id", "symbol")
    return instruments if exchange is None else instruments.filter(exchange=exchange)


# Every market-data request names an instrument; they change rarely (the admin), so each
# process keeps them INSTRUMENT_CACHE_SECONDS. Saves clear this process's copies at once
# (marketdata.signals); other processes see an edit within that time.
INSTRUMENT_CACHE_SECONDS = 30
_instruments = LocalCache(seconds=INSTRUMENT_CACHE_SECONDS, max_entries=20_000)


_active_pairs: tuple[float, set[tuple[str, str]]] = (float("-inf"), set())


def instrument_pairs_active() -> set[tuple[str, str]]:
    """Active (exchange, PUBLIC-SYMBOL) pairs, read at most every 30 s (consolidated pairs)."""
    global _active_pairs
    import time

    read_at, pairs = _active_pairs
    if time.monotonic() - read_at > 30:
        rows = Instrument.objects.filter(active=True, exchange__enabled=True).values_list(
            "exchange_id", "symbol"
        )
        pairs = {(exchange, symbol.upper()) for exchange, symbol in rows}
        _active_pairs = (time.monotonic(), pairs)
    return pairs


def instrument_get(*, exchange_id: str, symbol: str) -> Instrument | None:
    """`symbol` in the public BASE-QUOTE form. Callers must not modify the instance."""
    key = (exchange_id, symbol.upper())
    instrument: Instrument | None = _instruments.get(key)
    if instrument is None:
        mark = _instruments.mark()
        instrument = (
            Instrument.objects.select_related("exchange")
            .filter(exchange_id=exchange_id, symbol=key[1])
            .first()
        )
        if instrument is not None:
            _instruments.set(key, instrument, since=mark)
    return instrument


def instruments_forget() -> None:
    _instruments.clear()


def instrument_ids_for(*, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Map (exchange id, ccxt symbol) pairs to instrument ids in one query.

    Resolved per batch rather than cached in the process: one indexed query per batch is
    cheap next to the insert, and a cache would go stale when instruments change.
    """
    if not pairs:
        return {}
    condition = Q()
    for exchange_id, symbol in pairs:
        condition |= Q(exchange_id=exchange_id, ccxt_symbol=symbol)
    rows = Instrument.objects.filter(condition).values_list("exchange_id", "ccxt_symbol", "id")
    return {(exchange_id, symbol): pk for exchange_id, symbol, pk in rows}


def trades_between(
    *,
    instrument: Instrument,
    start_ms: int,
    end_ms: int,
    limit: int,
    after: tuple[int, int] | None = None,
) -> list[TradeRow]:
    """Trades in [start, end), oldest first, as (row id, trade id, ts µs, price, size, side).

    `after` is a keyset position (ts in microseconds, row id): rows strictly after it in
    (ts, id) order, so pages neither skip nor repeat trades that share a timestamp.
    """
    trades = Trade.objects.filter(
        instrument=instrument, ts__gte=ms_to_dt(start_ms), ts__lt=ms_to_dt(end_ms)
    )
    if after is not None:
        after_ts = us_to_dt(after[0])
        trades = trades.filter(ts__gte=after_ts).filter(
            Q(ts__gt=after_ts) | Q(ts=after_ts, id__gt=after[1])
        )
    rows = trades.order_by("ts", "id").values_list("id", "trade_id", "ts", "price", "size", "side")[
        :limit
    ]
    return [(pk, tid, dt_to_us(ts), price, size, side) for pk, tid, ts, price, size, side in rows]


def _bucket_sql(interval_ms: int) -> str:
    if connection.vendor == "postgresql":
        epoch_ms = "(EXTRACT(EPOCH FROM ts) * 1000)::bigint"
    else:
        epoch_ms = "(CAST(strftime('%%s', ts) AS INTEGER) * 1000)"
    return f"({epoch_ms} / {int(interval_ms)}) * {int(interval_ms)}"


def candles_between(
    *, instrument: Instrument, interval: str, start_ms: int, end_ms: int, limit: int
) -> list[CandleRow]:
    """OHLCV buckets in [start, end), oldest first, aggregated in SQL from 1-minute candles.

    Rows are (open time ms, open, high, low, close, volume, buy volume, trades, all 1m
    candles final). Open and close come from the first and last minute of each bucket,
    found through the unique (instrument, ts) index.
    """
    interval_ms = INTERVALS_MS[interval]
    table = Candle1m._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    if interval_ms == MINUTE_MS:
        return _candles_1m(instrument=instrument, start_ms=start_ms, end_ms=end_ms, limit=limit)
    sql = f"""
        WITH b AS (
            SELECT {_bucket_sql(interval_ms)} AS bucket, MIN(ts) AS first_ts, MAX(ts) AS last_ts,
                   MAX(high) AS high, MIN(low) AS low, SUM(volume) AS volume,
                   SUM(buy_volume) AS buy_volume, SUM(trade_count) AS trades,
                   MIN(CASE WHEN is_final THEN 1 ELSE 0 END) AS all_final
            FROM {table}
            WHERE instrument_id = %s AND ts >= %s AND ts < %s
            GROUP BY 1 ORDER BY 1 LIMIT %s
        )
        SELECT b.bucket, o.open, b.high, b.low, c.close, b.volume, b.buy_volume, b.trades,
               b.all_final
        FROM b
        JOIN {table} o ON o.instrument_id = %s AND o.ts = b.first_ts
        JOIN {table} c ON c.instrument_id = %s AND c.ts = b.last_ts
        ORDER BY b.bucket
    """  # noqa: S608 - table name and interval are ours, values are parameters
    params = [
        instrument.pk,
        adapt(ms_to_dt(start_ms)),
        adapt(ms_to_dt(end_ms)),
        limit,
        instrument.pk,
        instrument.pk,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [
            (int(bucket), o, h, low, c, v, bv, int(n), bool(final))
            for bucket, o, h, low, c, v, bv, n, final in cursor.fetchall()
        ]


def _candles_1m(
    *, instrument: Instrument, start_ms: int, end_ms: int, limit: int
) -> list[CandleRow]:
    """The 1-minute case of candles_between: each bucket is one stored candle.

    The most requested interval (charts, the 1,000-row page) skips the GROUP BY and the
    two self-joins; the bucket expression still yields the open time in milliseconds, so
    the database, not Python, converts 1,000 timestamps.
    """
    table = Candle1m._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    sql = f"""
        SELECT {_bucket_sql(MINUTE_MS)}, open, high, low, close, volume, buy_volume,
               trade_count, is_final
        FROM {table}
        WHERE instrument_id = %s AND ts >= %s AND ts < %s
        ORDER BY ts LIMIT %s
    """  # noqa: S608 - table name is ours, values are parameters
    params = [instrument.pk, adapt(ms_to_dt(start_ms)), adapt(ms_to_dt(end_ms)), limit]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [
            (int(bucket), o, h, low, c, v, bv, int(n), bool(final))
            for bucket, o, h, low, c, v, bv, n, final in cursor.fetchall()
        ]


T_co = TypeVar("T_co", covariant=True)


class _LiveRead(Protocol[T_co]):
    """A reader of the live store (live.py): raises RedisError when Redis is away."""

    __name__: str

    def __call__(self, *, exchange: str, symbol: str) -> T_co | None: ...


def _live(read: _LiveRead[T_co], instrument: Instrument) -> T_co | None:
    try:
        return read(exchange=instrument.exchange_id, symbol=instrument.ccxt_symbol)
    except RedisError:
        logger.warning("live %s unreadable (Redis): answering from PostgreSQL", read.__name__)
        return None


def book_from_snapshot(snapshot: BookSnapshot, *, instrument: Instrument) -> BookUpdate:
    """A stored snapshot as the book record the live store and the feeds hand out."""
    return BookUpdate(
        exchange=instrument.exchange_id,
        symbol=instrument.ccxt_symbol,
        ts=dt_to_ms(snapshot.ts),
        bids=tuple(tuple(level) for level in snapshot.bids),
        asks=tuple(tuple(level) for level in snapshot.asks),
    )


def book_latest(*, instrument: Instrument) -> BookUpdate | None:
    """The live book when the feed is streaming, else the latest stored snapshot (also
    while Redis is unreachable: PostgreSQL still has it, seconds older)."""
    live = _live(live_book_get, instrument)
    if live is not None:
        return live
    snapshot = BookSnapshot.objects.filter(instrument=instrument).order_by("-ts").first()
    return None if snapshot is None else book_from_snapshot(snapshot, instrument=instrument)


def ticker_latest(*, instrument: Instrument) -> TickerRecord | None:
    """The live ticker when the feed is streaming, else the last stored one (also while
    Redis is unreachable)."""
    live = _live(live_ticker_get, instrument)
    if live is not None:
        return live
    ticker = Ticker.objects.filter(instrument=instrument).first()
    if ticker is None:
        return None
    return TickerRecord(
        exchange=instrument.exchange_id,
        symbol=instrument.ccxt_symbol,
        ts=dt_to_ms(ticker.ts),
        last=ticker.last,
        bid=ticker.bid,
        ask=ticker.ask,
        bid_size=ticker.bid_size,
        ask_size=ticker.ask_size,
        high_24h=ticker.high_24h,
        low_24h=ticker.low_24h,
        open_24h=ticker.open_24h,
        volume_24h=ticker.volume_24h,
        quote_volume_24h=ticker.quote_volume_24h,
    )


# --- state as of an instant: what delayed plans read instead of the live book and ticker ---
DAY_MS = 86_400_000


def book_at(*, instrument: Instrument, at_ms: int) -> BookUpdate | None:
    """The latest stored book snapshot taken at or before `at_ms`; never the live book."""
    snapshot = (
        BookSnapshot.objects.filter(instrument=instrument, ts__lte=ms_to_dt(at_ms))
        .order_by("-ts")
        .first()
    )
    return None if snapshot is None else book_from_snapshot(snapshot, instrument=instrument)


def ticker_at(*, instrument: Instrument, at_ms: int) -> TickerRecord | None:
    """The ticker as it stood at `at_ms`, rebuilt from stored data older than it.

    Last price: the last trade before `at_ms` (else the close of the last whole minute).
    24 h stats: the whole 1-minute candles of the 24 hours before the minute containing
    `at_ms` (that minute's candle would hold later trades), plus that minute's trades
    before `at_ms`, so the last price always lies within the high and low. The quote
    volume is estimated as volume x typical price (high + low + close) / 3 per minute, as
    stored candles carry no quote volume. Best bid/ask: the book snapshot at or before
    `at_ms`.
    """
    end = at_ms - at_ms % MINUTE_MS
    trade = (
        Trade.objects.filter(instrument=instrument, ts__lt=ms_to_dt(at_ms))
        .order_by("-ts", "-id")
        .values_list("ts", "price")
        .first()
    )
    minutes = Candle1m.objects.filter(
        instrument=instrument, ts__gte=ms_to_dt(end - DAY_MS), ts__lt=ms_to_dt(end)
    )
    first = minutes.order_by("ts").values_list("open", flat=True).first()
    last_minute = minutes.order_by("-ts").values_list("ts", "close").first()
    if trade is not None:
        ts, last = dt_to_ms(trade[0]), trade[1]
    elif last_minute is not None:
        ts, last = dt_to_ms(last_minute[0]) + MINUTE_MS, last_minute[1]
    else:
        return None
    stats = minutes.aggregate(
        high_24h=Max("high"),
        low_24h=Min("low"),
        volume_24h=Sum("volume"),
        quote_volume_24h=Sum(F("volume") * (F("high") + F("low") + F("close")) / 3.0),
    )
    open_minute = Trade.objects.filter(
        instrument=instrument, ts__gte=ms_to_dt(end), ts__lt=ms_to_dt(at_ms)
    ).aggregate(
        high=Max("price"), low=Min("price"), volume=Sum("size"), quote=Sum(F("price") * F("size"))
    )
    if open_minute["volume"]:
        stats = {
            "high_24h": max(v for v in (stats["high_24h"], open_minute["high"]) if v is not None),
            "low_24h": min(v for v in (stats["low_24h"], open_minute["low"]) if v is not None),
            "volume_24h": (stats["volume_24h"] or 0.0) + open_minute["volume"],
            "quote_volume_24h": (stats["quote_volume_24h"] or 0.0) + open_minute["quote"],
        }
    book = book_at(instrument=instrument, at_ms=at_ms)
    bid = book.bids[0] if book is not None and book.bids else (None, None)
    ask = book.asks[0] if book is not None and book.asks else (None, None)
    return TickerRecord(
        exchange=instrument.exchange_id,
        symbol=instrument.ccxt_symbol,
        ts=max(ts, book.ts) if book is not None else ts,
        last=last,
        bid=bid[0],
        ask=ask[0],
        bid_size=bid[1],
        ask_size=ask[1],
        open_24h=first,
        **stats,
    )
