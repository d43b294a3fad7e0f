"""Query-parameter serializers of the market-data endpoints: the input contract.

Timestamps accept integer milliseconds since the Unix epoch or ISO 8601; every value is
turned into milliseconds here so views and selectors see one unit.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from rest_framework import serializers

from marketdata.candles import INTERVALS_MS
from quantsaas.api.fields import MAX_MS, TimestampField

MAX_ROW_ID = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,20}")


def cursor_encode(ts_us: int, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"t1:{ts_us}:{row_id}".encode()).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[int, int]:
    """Raise ValueError for anything that is not a cursor we issued."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(cursor) from exc
    version, ts_us, row_id = [*raw.split(":"), "", ""][:3]
    if version != "t1" or not _DIGITS.fullmatch(ts_us) or not _DIGITS.fullmatch(row_id):
        raise ValueError(cursor)
    # A forged cursor must not reach a datetime past year 9999 or an id past bigint.
    if int(ts_us) > MAX_MS * 1000 or int(row_id) > MAX_ROW_ID:
        raise ValueError(cursor)
    return int(ts_us), int(row_id)


class WindowParams(serializers.Serializer[dict[str, Any]]):
    start = TimestampField(required=False, help_text="Inclusive; ms since epoch or ISO 8601.")
    end = TimestampField(required=False, help_text="Exclusive; ms since epoch or ISO 8601.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("start"), attrs.get("end")
        if start is not None and end is not None and start >= end:
            raise serializers.ValidationError({"end": "end must be after start."})
        return attrs


class TradesParams(WindowParams):
    limit = serializers.IntegerField(min_value=1, max_value=10_000, default=1_000)
    cursor = serializers.CharField(required=False, help_text="The `next` link carries it.")

    def validate_cursor(self, value: str) -> tuple[int, int]:
        try:
            return cursor_decode(value)
        except ValueError:
            raise serializers.ValidationError("Not a valid cursor.") from None


class CandlesParams(WindowParams):
    interval = serializers.ChoiceField(choices=list(INTERVALS_MS), default="1m")
    limit = serializers.IntegerField(min_value=1, max_value=5_000, default=500)


BOOK_DEFAULT_DEPTH = 20


class BookParams(serializers.Serializer[dict[str, Any]]):
    depth = serializers.IntegerField(
        min_value=1,
        max_value=50,
        required=False,
        help_text=f"Levels a side; default {BOOK_DEFAULT_DEPTH}, or your plan's depth if less. "
        "More than your plan's depth is refused (403 plan_required).",
    )


class InstrumentsParams(serializers.Serializer[dict[str, Any]]):
    exchange = serializers.CharField(required=False, max_length=32)
