"""Serializer fields every API shares: timestamps in, timestamps out.

The API speaks integer milliseconds since the Unix epoch (UTC) and accepts ISO 8601
on input too (docs/api.md). One parser serves every endpoint, so "what is a valid time"
never differs between, say, trade history and key expiry.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from quantsaas.timeutil import dt_to_ms, ms_to_dt

MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_DIGITS = re.compile(r"\d{1,15}")
_OFFSET_AS_SPACE = re.compile(r" (\d{2}:?\d{2})$")


def timestamp_parse_ms(value: object) -> int:
    """Milliseconds from an integer, a string of digits or ISO 8601; ValueError otherwise.

    A time without an offset is UTC, the API's only time zone.
    """
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        ms = value
    elif isinstance(value, float) and value.is_integer():
        ms = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if _DIGITS.fullmatch(text):
            ms = int(text)
        else:
            # An unescaped "+01:00" in a query string arrives as " 01:00".
            parsed = datetime.fromisoformat(_OFFSET_AS_SPACE.sub(r"+\1", text))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            ms = dt_to_ms(parsed)
    else:
        raise ValueError(value)
    if not 0 <= ms <= MAX_MS:
        raise ValueError(value)
    return ms


def ms_from_datetime(value: datetime | None) -> int | None:
    return None if value is None else dt_to_ms(value)


@extend_schema_field(
    {
        "oneOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}],
        "description": "Milliseconds since the Unix epoch (UTC), or an ISO 8601 timestamp.",
    }
)
class TimestampField(serializers.Field[int | datetime, object, int, Any]):
    """Input time as integer ms (or an aware datetime with `as_datetime=True`)."""

    default_error_messages = {
        "invalid": "Use integer milliseconds since the Unix epoch or an ISO 8601 time.",
    }

    def __init__(self, *, as_datetime: bool = False, **kwargs: Any) -> None:
        self.as_datetime = as_datetime
        super().__init__(**kwargs)

    def to_internal_value(self, data: object) -> int | datetime:
        try:
            ms = timestamp_parse_ms(data)
        except (ValueError, OverflowError):
            self.fail("invalid")
        return ms_to_dt(ms) if self.as_datetime else ms

    def to_representation(self, value: int | datetime) -> int:
        return dt_to_ms(value) if isinstance(value, datetime) else value


@extend_schema_field(OpenApiTypes.INT)
class TimestampMsField(serializers.ReadOnlyField):
    """A datetime attribute rendered as integer milliseconds (null stays null)."""

    def to_representation(self, value: datetime | None) -> int | None:
        return ms_from_datetime(value)
