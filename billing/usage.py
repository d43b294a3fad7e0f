"""Usage counters: live in Redis (written by the rate limiter and the stream), rolled up
into UsageDaily by a Celery task so history survives Redis and is cheap to query.

Embedded mode (no REDIS_URL) has one process: the web pages, the API and the stream
hub share it, so the counters live in that process (the API's in the local limiter,
the stream's here) and the roll-up stores them the same way.
"""

from __future__ import annotations

import logging
import threading
from datetime import date, timedelta

import redis
from django.db import transaction
from django.db.models import Value
from django.db.models.functions import Greatest

from accounts.models import Organization
from billing.models import UsageDaily
from billing.ratelimit import KEY_PREFIX, USAGE_TTL_SECONDS, local_limiter, redis_client

logger = logging.getLogger(__name__)

EPOCH = date(1970, 1, 1)
KINDS = {"api": "api_requests", "stream": "stream_messages"}


def _day_number(day: date) -> int:
    return (day - EPOCH).days


def _usage_key(kind: str, organization_id: int, day: date) -> str:
    return f"{KEY_PREFIX}:usage:{kind}:{organization_id}:{_day_number(day)}"


class _LocalStreamUsage:
    """Embedded mode's stream counters: (organization id, day number) -> messages."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[int, int], int] = {}

    def add(self, organization_id: int, day: date, count: int) -> None:
        key = (organization_id, _day_number(day))
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + count

    def get(self, organization_id: int, day: date) -> int:
        return self.counts.get((organization_id, _day_number(day)), 0)


local_stream_usage = _LocalStreamUsage()


def stream_messages_count(*, organization_id: int, count: int, day: date) -> None:
    """Called by the stream to record messages delivered; never fails the stream."""
    client = redis_client()
    if client is None:
        local_stream_usage.add(organization_id, day, count)
        return
    key = _usage_key("stream", organization_id, day)
    try:
        pipe = client.pipeline()
        pipe.incrby(key, count)
        pipe.expire(key, USAGE_TTL_SECONDS)
        pipe.execute()
    except redis.RedisError:
        logger.warning("usage: Redis unreachable, stream messages not counted", exc_info=True)


def usage_live(*, organization: Organization, day: date) -> dict[str, int]:
    """The day's counters straight from Redis (zeros if Redis is unavailable)."""
    client = redis_client()
    if client is None:
        api = local_limiter.usage.get((organization.pk, _day_number(day)), 0)
        stream = local_stream_usage.get(organization.pk, day)
        return {"api_requests": api, "stream_messages": stream}
    try:
        values = client.mget([_usage_key(kind, organization.pk, day) for kind in KINDS])
    except redis.RedisError:
        logger.warning("usage: Redis unreachable", exc_info=True)
        values = [None, None]
    return {field: int(value or 0) for field, value in zip(KINDS.values(), values, strict=True)}


def _parse_key(key: bytes | str) -> tuple[str, int, date] | None:
    text = key.decode() if isinstance(key, bytes) else key
    parts = text.removeprefix(f"{KEY_PREFIX}:usage:").split(":")
    if len(parts) != 3 or parts[0] not in KINDS:
        return None
    kind, organization_id, day_number = parts
    return kind, int(organization_id), EPOCH + timedelta(days=int(day_number))


def usage_rollup() -> int:
    """Copy every Redis day counter into UsageDaily; returns the rows written.

    Idempotent: a Redis counter is the day's running total, so it is written
    with GREATEST (never lowering a stored value if Redis lost data).
    """
    client = redis_client()
    totals: dict[tuple[int, date], dict[str, int]] = {}
    if client is None:
        for kind, counts in (
            ("api", dict(local_limiter.usage)),
            ("stream", dict(local_stream_usage.counts)),
        ):
            for (organization_id, day_number), value in counts.items():
                day = EPOCH + timedelta(days=day_number)
                totals.setdefault((organization_id, day), {})[KINDS[kind]] = value
        return _totals_store(totals)
    for key in client.scan_iter(match=f"{KEY_PREFIX}:usage:*", count=500):
        parsed = _parse_key(key)
        if parsed is None:
            continue
        kind, organization_id, day = parsed
        value = int(client.get(key) or 0)
        totals.setdefault((organization_id, day), {})[KINDS[kind]] = value
    return _totals_store(totals)


def _totals_store(totals: dict[tuple[int, date], dict[str, int]]) -> int:
    existing = set(
        Organization.objects.filter(pk__in={k[0] for k in totals}).values_list("pk", flat=True)
    )
    written = 0
    for (organization_id, day), fields in totals.items():
        if organization_id not in existing:
            continue
        _usage_day_store(organization_id=organization_id, day=day, fields=fields)
        written += 1
    return written


@transaction.atomic
def _usage_day_store(*, organization_id: int, day: date, fields: dict[str, int]) -> None:
    row, _ = UsageDaily.objects.get_or_create(organization_id=organization_id, date=day)
    UsageDaily.objects.filter(pk=row.pk).update(
        **{field: Greatest(field, Value(value)) for field, value in fields.items()}
    )
