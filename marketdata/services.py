"""Writes of market data: trades, 1-minute candles, book snapshots, tickers, retention.

The feed runner, backfill, gap repair and the simulator's history loader all store
through these functions, so idempotency lives in exactly one place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

from django.db import connection, transaction

from marketdata.candle_cache import candles_changed
from marketdata.candles import candles_from_trades
from marketdata.models import BookSnapshot, Candle1m, Instrument, Ticker, Trade
from marketdata.records import BookUpdate, CandleRecord, TickerRecord, TradeRecord
from marketdata.selectors import instrument_ids_for
from quantsaas.timeutil import MINUTE_MS, dt_to_ms, ms_to_dt, now_ms

logger = logging.getLogger(__name__)

BOOK_SNAPSHOT_DEPTH = 50

_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS md_trade_stage ("
    "instrument_id bigint, trade_id text, ts_ms bigint, received_ms bigint, "
    "price float8, size float8, side text) ON COMMIT DELETE ROWS"
)
# Exact millisecond arithmetic (no float rounding through to_timestamp).
_STAGE_INSERT = (
    "INSERT INTO marketdata_trade (instrument_id, trade_id, ts, received_ts, price, size, side) "
    "SELECT instrument_id, trade_id, "
    "timestamptz 'epoch' + ts_ms * interval '1 millisecond', "
    "timestamptz 'epoch' + received_ms * interval '1 millisecond', price, size, side "
    "FROM md_trade_stage ORDER BY instrument_id, ts_ms "
    "ON CONFLICT (instrument_id, trade_id) DO NOTHING"
)


# (instrument id, trade id, ts ms, received ms, price, size, side): a staged trade row.
TradeStageRow = tuple[int, str, int, int, float, float, str]


def _rows_for(records: Iterable[TradeRecord]) -> list[TradeStageRow]:
    records = list(records)
    ids = instrument_ids_for(pairs={(r.exchange, r.symbol) for r in records})
    received_default = now_ms()
    rows: list[TradeStageRow] = []
    unknown: set[tuple[str, str]] = set()
    for r in records:
        instrument_id = ids.get((r.exchange, r.symbol))
        if instrument_id is None:
            unknown.add((r.exchange, r.symbol))
            continue
        received = r.received_ts if r.received_ts is not None else received_default
        rows.append((instrument_id, r.trade_id, r.ts, received, r.price, r.size, r.side))
    if unknown:
        # A feed must not die on one unconfigured market; the operator sees it in the log.
        logger.warning("Dropped trades for unknown instruments: %s", sorted(unknown))
    return rows


@transaction.atomic
def trades_ingest(*, records: Iterable[TradeRecord]) -> int:
    """Store trades idempotently on (instrument, exchange trade id); return how many were new.

    Replays after a reconnect, gap repair and overlapping backfill chunks all send trades
    we may already hold; duplicates are dropped by the database, never by a read-then-write
    race. On PostgreSQL the batch is COPYed into a session temp table and moved with one
    INSERT ... ON CONFLICT DO NOTHING, the fastest idempotent path.
    """
    rows = _rows_for(records)
    if not rows:
        return 0
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_STAGE_DDL)
            cursor.execute("TRUNCATE md_trade_stage")
            with cursor.copy(
                "COPY md_trade_stage (instrument_id, trade_id, ts_ms, received_ms, price, size, "
                "side) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(_STAGE_INSERT)
            inserted: int = cursor.rowcount
            return inserted
    # SQLite (embedded mode): INSERT OR IGNORE, counting rows the database really wrote.
    objects = [
        Trade(
            instrument_id=instrument_id,
            trade_id=trade_id,
            ts=ms_to_dt(ts),
            received_ts=ms_to_dt(received),
            price=price,
            size=size,
            side=side,
        )
        for instrument_id, trade_id, ts, received, price, size, side in rows
    ]
    raw = connection.connection
    before = raw.total_changes
    Trade.objects.bulk_create(objects, ignore_conflicts=True, batch_size=500)
    written: int = raw.total_changes - before
    return written


_CANDLE_FIELDS = ["open", "high", "low", "close", "volume", "buy_volume", "trade_count", "is_final"]


@transaction.atomic
def candles_upsert(*, candles: Iterable[CandleRecord]) -> int:
    """Insert or overwrite 1-minute candles (the caller holds the whole minute's state)."""
    candles = list(candles)
    ids = instrument_ids_for(pairs={(c.exchange, c.symbol) for c in candles})
    objects = [
        Candle1m(
            instrument_id=ids[(c.exchange, c.symbol)],
            ts=ms_to_dt(c.ts),
            **{field: getattr(c, field) for field in _CANDLE_FIELDS},
        )
        for c in candles
        if (c.exchange, c.symbol) in ids
    ]
    Candle1m.objects.bulk_create(
        objects,
        update_conflicts=True,
        unique_fields=["instrument", "ts"],
        update_fields=_CANDLE_FIELDS,
        batch_size=1000,
    )
    # Retire cached pages now and again after commit: a page rebuilt in between from the
    # not yet committed state must not survive (marketdata.candle_cache).
    changed = {candle.instrument_id for candle in objects}
    candles_changed(changed)
    transaction.on_commit(lambda: candles_changed(changed))
    return len(objects)


@transaction.atomic
def candles_rebuild(
    *, instrument: Instrument, start_ms: int, end_ms: int, final_before: int | None = None
) -> int:
    """Recompute the 1-minute candles of [start, end) from stored trades.

    Gap repair and backfill call this after inserting trades, so candles always agree
    with the tape. Whole minutes are rebuilt: start is floored, end is ceiled.
    """
    start_ms -= start_ms % MINUTE_MS
    end_ms += -end_ms % MINUTE_MS
    exchange, symbol = instrument.exchange_id, instrument.ccxt_symbol
    trades = (
        TradeRecord(
            exchange=exchange,
            symbol=symbol,
            trade_id=trade_id,
            ts=dt_to_ms(ts),
            price=price,
            size=size,
            side=side,
        )
        for trade_id, ts, price, size, side in Trade.objects.filter(
            instrument=instrument, ts__gte=ms_to_dt(start_ms), ts__lt=ms_to_dt(end_ms)
        )
        .order_by("ts", "id")
        .values_list("trade_id", "ts", "price", "size", "side")
        .iterator(chunk_size=10_000)
    )
    if final_before is None:
        final_before = now_ms()
    return candles_upsert(candles=candles_from_trades(trades, final_before=final_before))


def _levels(levels: Sequence[Sequence[float]], depth: int) -> list[list[float]]:
    return [[float(price), float(size)] for price, size in levels[:depth]]


@transaction.atomic
def book_snapshot_write(*, update: BookUpdate, depth: int = BOOK_SNAPSHOT_DEPTH) -> int:
    """Store a periodic top-`depth` snapshot of a book; returns the snapshot id (0 if unknown)."""
    ids = instrument_ids_for(pairs={(update.exchange, update.symbol)})
    instrument_id = ids.get((update.exchange, update.symbol))
    if instrument_id is None:
        return 0
    snapshot = BookSnapshot.objects.create(
        instrument_id=instrument_id,
        ts=ms_to_dt(update.ts),
        bids=_levels(update.bids, depth),
        asks=_levels(update.asks, depth),
    )
    return snapshot.pk


_TICKER_FIELDS = [
    "last",
    "bid",
    "ask",
    "bid_size",
    "ask_size",
    "high_24h",
    "low_24h",
    "open_24h",
    "volume_24h",
    "quote_volume_24h",
]


@transaction.atomic
def tickers_upsert(*, records: Iterable[TickerRecord]) -> int:
    """Overwrite the latest ticker of each instrument (one statement for the batch)."""
    latest: dict[tuple[str, str], TickerRecord] = {}
    for record in records:
        key = (record.exchange, record.symbol)
        if key not in latest or record.ts >= latest[key].ts:
            latest[key] = record
    ids = instrument_ids_for(pairs=set(latest))
    objects = [
        Ticker(
            instrument_id=ids[key],
            ts=ms_to_dt(record.ts),
            **{field: getattr(record, field) for field in _TICKER_FIELDS},
        )
        for key, record in latest.items()
        if key in ids
    ]
    Ticker.objects.bulk_create(
        objects,
        update_conflicts=True,
        unique_fields=["instrument"],
        update_fields=["ts", *_TICKER_FIELDS],
    )
    return len(objects)


def trades_prune(*, before: datetime, batch_size: int = 50_000) -> int:
    """Delete trades older than `before` in bounded batches (retention).

    Small batches keep each transaction short so the feed's inserts never wait behind
    one huge delete; on PostgreSQL the BRIN index on ts finds the old rows cheaply.
    """
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(
                Trade.objects.filter(ts__lt=before).values_list("id", flat=True)[:batch_size]
            )
            if not ids:
                return deleted
            deleted += Trade.objects.filter(id__in=ids).delete()[0]


def book_snapshots_prune(*, before: datetime) -> int:
    return BookSnapshot.objects.filter(ts__lt=before).delete()[0]
