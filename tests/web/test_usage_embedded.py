"""Embedded mode (no Redis): the stream's deliveries are counted in the process and rolled
up like the Redis counters, so the usage page does not stay at 0."""

from __future__ import annotations

import pytest
from django.utils import timezone

from billing import usage
from billing.models import UsageDaily

pytestmark = pytest.mark.django_db


def test_stream_messages_are_counted_and_rolled_up_without_redis(monkeypatch, acme):
    monkeypatch.setattr(usage, "redis_client", lambda: None)
    monkeypatch.setattr(usage, "local_stream_usage", usage._LocalStreamUsage())
    today = timezone.now().date()

    usage.stream_messages_count(organization_id=acme.pk, count=7, day=today)
    usage.stream_messages_count(organization_id=acme.pk, count=5, day=today)

    assert usage.usage_live(organization=acme, day=today)["stream_messages"] == 12
    assert usage.usage_rollup() >= 1
    assert UsageDaily.objects.get(organization=acme, date=today).stream_messages == 12
