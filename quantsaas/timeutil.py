"""Millisecond timestamps (the API's unit) to and from aware UTC datetimes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINUTE_MS = 60_000


def ms_to_dt(ms: int) -> datetime:
    # Integer arithmetic: exact to the microsecond, unlike fromtimestamp(ms / 1000).
    return EPOCH + timedelta(milliseconds=ms)


def dt_to_ms(dt: datetime) -> int:
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def dt_to_us(dt: datetime) -> int:
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def us_to_dt(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def minute_floor(ms: int) -> int:
    return ms - ms % MINUTE_MS
