"""Times as the API speaks them: integer milliseconds since the epoch, UTC."""

from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta, timezone

TimeLike = int | float | str | datetime | date | timedelta
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def duration_seconds(text: str) -> float:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"7d"``, ``"2w"`` in seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (examples: 30s, 15m, 1h, 7d)")
    return float(match[1]) * _UNIT_SECONDS[match[2]]


def to_ms(value: TimeLike) -> int:
    """Milliseconds since the epoch for any way a caller may say a time.

    Numbers are milliseconds already; a ``timedelta`` or a duration string
    (``"1h"``) means that long ago; naive datetimes are taken as UTC, as the API does.
    """
    if isinstance(value, bool):
        raise TypeError("a time cannot be a bool")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, timedelta):
        return now_ms() - int(value.total_seconds() * 1000)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(value.timestamp() * 1000)
    if isinstance(value, date):
        return to_ms(datetime(value.year, value.month, value.day, tzinfo=timezone.utc))
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        if _DURATION.match(text):
            return now_ms() - int(duration_seconds(text) * 1000)
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            return to_ms(datetime.fromisoformat(text))
        except ValueError:
            raise ValueError(
                f"not a time: {value!r} (ms since the epoch, ISO 8601, or a duration like 1h)"
            ) from None
    raise TypeError(f"not a time: {value!r}")
