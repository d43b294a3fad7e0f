"""The ``replay`` op: a stored range of a channel, sent over the same socket.

Read from PostgreSQL in keyset pages (the REST history's own selectors, so a
replay equals ``GET .../trades`` or ``.../candles?interval=1m`` of the range,
record for record), paced at ``speed`` times real time or as fast as the
connection takes it, then ``replay_end``. The plan's history depth and delay
apply as on REST; records count as delivered messages in usage.

Memory stays bounded whatever the range: one page at a time, and the next page
is read only once the connection's queue has room (a client that reads slowly
makes the replay slower, never the process bigger).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from marketdata.streaming import frames
from marketdata.streaming.connection import Connection
from marketdata.streaming.protocol import Replay, channel_kind
from marketdata.streaming.timing import now_ms
from quantsaas.db import in_db_thread

if TYPE_CHECKING:
    from marketdata.selectors import CandleRow, TradeRow

# One replayed record in its REST shape (a trade or a candle), JSON.
Record = dict[str, Any]

PAGE = 5000  # records read per query
FRAME_RECORDS = 500  # records per replay frame
PACE_SLICE_MS = 100  # at a given speed, one frame per this much wall time at most
MINUTE_MS = 60_000


class ReplayRefused(Exception):
    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.details = code, details or {}


@dataclass(frozen=True)
class ReplayPlan:
    instrument_id: int
    start_ms: int
    end_ms: int


def replay_plan(*, replay: Replay, organization_id: int, delay_seconds: int) -> ReplayPlan:
    """Sync (database): the instrument and the range the plan allows, or ReplayRefused."""
    from accounts.models import Organization
    from billing.gates import history_boundary
    from marketdata.selectors import instrument_get

    _, exchange, symbol = replay.channel.split(".", 2)
    instrument = instrument_get(exchange_id=exchange, symbol=symbol)
    if instrument is None:
        raise ReplayRefused("unknown_channel", "Unknown channel.", {"channels": [replay.channel]})
    organization = Organization.objects.get(pk=organization_id)
    now = now_ms()
    boundary = history_boundary(organization=organization, now_ms=now)
    if boundary is not None and replay.start_ms < boundary:
        raise ReplayRefused(
            "plan_required",
            "Your plan's history does not reach that far back.",
            {"oldest_ms": boundary},
        )
    # A delayed plan sees history only up to its delay, as on REST.
    end = min(replay.end_ms, now - delay_seconds * 1000)
    return ReplayPlan(instrument_id=instrument.pk, start_ms=replay.start_ms, end_ms=end)


def _trades_page(plan: ReplayPlan, after: tuple[int, int] | None) -> list[TradeRow]:
    from marketdata.models import Instrument
    from marketdata.selectors import trades_between

    instrument = Instrument(pk=plan.instrument_id)
    return trades_between(
        instrument=instrument,
        start_ms=plan.start_ms,
        end_ms=plan.end_ms,
        limit=PAGE,
        after=after,
    )


def _candles_page(plan: ReplayPlan, start_ms: int) -> list[CandleRow]:
    from marketdata.models import Instrument
    from marketdata.selectors import candles_between

    instrument = Instrument(pk=plan.instrument_id)
    return candles_between(
        instrument=instrument, interval="1m", start_ms=start_ms, end_ms=plan.end_ms, limit=PAGE
    )


async def _pages(plan: ReplayPlan, kind: str) -> AsyncIterator[list[Record]]:
    """(records, ts of each) page by page, oldest first, in the REST shapes."""
    if kind == "trades":
        after: tuple[int, int] | None = None
        while True:
            rows = await in_db_thread(_trades_page)(plan, after)
            if not rows:
                return
            yield [
                {"id": tid, "ts": ts_us // 1000, "price": price, "size": size, "side": side}
                for _, tid, ts_us, price, size, side in rows
            ]
            if len(rows) < PAGE:
                return
            after = (rows[-1][2], rows[-1][0])
    else:
        start = plan.start_ms
        while True:
            candles = await in_db_thread(_candles_page)(plan, start)
            if not candles:
                return
            yield [
                {
                    "ts": ts,
                    "open": o,
                    "high": h,
                    "low": low,
                    "close": c,
                    "volume": v,
                    "buy_volume": bv,
                    "trades": n,
                    "final": final,
                }
                for ts, o, h, low, c, v, bv, n, final in candles
            ]
            if len(candles) < PAGE:
                return
            start = candles[-1][0] + MINUTE_MS


def _slices(records: list[Record], *, speed: float) -> list[list[Record]]:
    """Frames of at most FRAME_RECORDS records, and (paced) at most a slice of time each."""
    span = PACE_SLICE_MS * speed if speed else None
    out: list[list[Record]] = []
    current: list[Record] = []
    for record in records:
        if current and (
            len(current) >= FRAME_RECORDS or (span and record["ts"] - current[0]["ts"] >= span)
        ):
            out.append(current)
            current = []
        current.append(record)
    if current:
        out.append(current)
    return out


async def replay_run(*, conn: Connection, replay: Replay, plan: ReplayPlan) -> int:
    """Send the range; returns the number of records sent."""
    kind = channel_kind(replay.channel)
    sent = 0
    started_wall = time.monotonic()
    async for records in _pages_bounded(conn, plan, kind):
        for frame_records in _slices(records, speed=replay.speed):
            if replay.speed:
                due = started_wall + (frame_records[0]["ts"] - plan.start_ms) / 1000 / replay.speed
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            while not conn.closed and len(conn.frames) > conn.max_frames // 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # the client reads slowly: so does the replay
            if conn.closed:
                return sent
            conn.push_counted(
                frames.dumps({"type": "replay", "channel": replay.channel, "data": frame_records})
            )
            sent += len(frame_records)
    conn.push(
        frames.dumps(
            {
                "type": "replay_end",
                "channel": replay.channel,
                "from": plan.start_ms,
                "to": plan.end_ms,
                "count": sent,
            }
        )
    )
    return sent


async def _pages_bounded(
    conn: Connection, plan: ReplayPlan, kind: str
) -> AsyncIterator[list[Record]]:
    async for page in _pages(plan, kind):
        if conn.closed:
            return
        yield page
