"""Retention of the stored live analytics: OFI seconds and VPIN buckets past the configured
age are deleted in batches, recent ones kept, and beat runs the job."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics import tasks
from analytics.models import OfiSecond, VpinBucket
from analytics.retention import ofi_seconds_prune, vpin_buckets_prune
from marketdata.models import Instrument
from quantsaas.celery import app as celery_app

pytestmark = pytest.mark.django_db


@pytest.fixture
def instruments() -> list[Instrument]:
    return list(Instrument.objects.filter(exchange_id="sim").order_by("pk")[:2])


def _ofi(instrument: Instrument, start: datetime, count: int) -> None:
    OfiSecond.objects.bulk_create(
        OfiSecond(instrument=instrument, ts=start + timedelta(seconds=i), ofi=1.0, updates=1)
        for i in range(count)
    )


def _vpin(instrument: Instrument, start: datetime, count: int) -> None:
    VpinBucket.objects.bulk_create(
        VpinBucket(
            instrument=instrument,
            ts=start + timedelta(seconds=i),
            bucket_volume=10.0,
            window=50,
            bar_ms=60_000,
            buy_volume=6.0,
            sell_volume=4.0,
            vpin=0.2,
            sigma=1.0,
        )
        for i in range(count)
    )


def test_old_ofi_seconds_are_deleted_in_batches_and_recent_ones_kept(instruments):
    now = timezone.now()
    cutoff = now - timedelta(days=30)
    for instrument in instruments:
        _ofi(instrument, cutoff - timedelta(seconds=7), 7)  # the last one ends just before
        _ofi(instrument, cutoff, 3)  # the cutoff itself is kept
        _ofi(instrument, now - timedelta(minutes=5), 4)

    with CaptureQueriesContext(connection) as queries:
        deleted = ofi_seconds_prune(before=cutoff, batch_size=3)

    assert deleted == 14
    for instrument in instruments:
        kept = OfiSecond.objects.filter(instrument=instrument)
        assert kept.count() == 7
        assert not kept.filter(ts__lt=cutoff).exists()
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 6  # 7 old seconds per instrument in batches of at most 3


def test_old_vpin_buckets_are_deleted_in_batches_and_recent_ones_kept(instruments):
    now = timezone.now()
    cutoff = now - timedelta(days=30)
    first, second = instruments
    _vpin(first, cutoff - timedelta(days=2), 5)
    _vpin(first, now - timedelta(hours=1), 2)
    _vpin(second, cutoff - timedelta(seconds=1), 1)
    _vpin(second, cutoff, 1)

    deleted = vpin_buckets_prune(before=cutoff, batch_size=2)

    assert deleted == 6
    assert VpinBucket.objects.filter(instrument=first).count() == 2
    assert list(VpinBucket.objects.filter(instrument=second).values_list("ts", flat=True)) == [
        cutoff
    ]


def test_nothing_old_deletes_nothing(instruments):
    _ofi(instruments[0], timezone.now() - timedelta(hours=1), 3)
    _vpin(instruments[0], timezone.now() - timedelta(hours=1), 3)

    assert ofi_seconds_prune(before=timezone.now() - timedelta(days=1)) == 0
    assert vpin_buckets_prune(before=timezone.now() - timedelta(days=1)) == 0
    assert OfiSecond.objects.count() == VpinBucket.objects.count() == 3


def test_the_task_applies_the_configured_retention(instruments, settings):
    settings.ANALYTICS_LIVE_RETENTION_DAYS = 7
    now = timezone.now()
    _ofi(instruments[0], now - timedelta(days=8), 5)
    _ofi(instruments[0], now - timedelta(days=6), 2)
    _vpin(instruments[1], now - timedelta(days=8), 3)
    _vpin(instruments[1], now - timedelta(days=6), 1)

    assert tasks.live_analytics_retention() == {"ofi_seconds": 5, "vpin_buckets": 3}
    assert OfiSecond.objects.count() == 2
    assert VpinBucket.objects.count() == 1


def test_zero_days_keeps_everything(instruments, settings):
    settings.ANALYTICS_LIVE_RETENTION_DAYS = 0
    _ofi(instruments[0], timezone.now() - timedelta(days=3_000), 2)

    assert tasks.live_analytics_retention() == {"ofi_seconds": 0, "vpin_buckets": 0}
    assert OfiSecond.objects.count() == 2


def test_beat_runs_the_retention_task_hourly(settings):
    entries = [
        entry
        for entry in settings.CELERY_BEAT_SCHEDULE.values()
        if entry["task"] == "analytics.tasks.live_analytics_retention"
    ]

    assert [entry["schedule"] for entry in entries] == [3600]
    assert "analytics.tasks.live_analytics_retention" in celery_app.tasks
