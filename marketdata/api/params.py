"""Query-parameter serializers of the market-data endpoints: the input contract.

Timestamps accept integer milliseconds since the Unix epoch or ISO 8601; every value is
turned into milliseconds here so views and selectors see one unit.
"""

from __future__ import annotations

import base64
import binascii
import re

from rest_framework import serializers

from marketdata.candles import INTERVALS_MS
from quantsaas.api.fields import TimestampField

MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_OFFSET_AS_SPACE = re.compile(r" (\d{2}:?\d{2})$")


def cursor_encode(ts_us: int, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"t1:{ts_us}:{row_id}".encode()).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[int, int]:
    """Raise ValueError for anything that is not a cursor we issued."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(cursor) from exc
    version, ts_us, row_id = [*raw.split(":"), "", ""][:3]
    if version != "t1" or not ts_us.isdigit() or not row_id.isdigit():
        raise ValueError(cursor)
    return int(ts_us), int(row_id)


class WindowParams(serializers.Serializer):
    start = TimestampField(required=False, help_text="Inclusive; ms since epoch or ISO 8601.")
    end = TimestampField(required=False, help_text="Exclusive; ms since epoch or ISO 8601.")

    def validate(self, attrs: dict) -> dict:
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


class BookParams(serializers.Serializer):
    depth = serializers.IntegerField(min_value=1, max_value=50, default=20)


class InstrumentsParams(serializers.Serializer):
    exchange = serializers.CharField(required=False, max_length=32)
