"""Celery tasks of analytics. They take ids, never model instances (the row is re-read)."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from analytics.retention import ofi_seconds_prune, vpin_buckets_prune
from analytics.services import backtest_execute, backtests_abandoned_fail

logger = logging.getLogger(__name__)


@shared_task(name="analytics.tasks.backtest_run", acks_late=True)
def backtest_run(job_id: int) -> str | None:
    """Run one backtest job; its progress, result or error land on the job's row."""
    job = backtest_execute(backtest_id=job_id)
    return None if job is None else job.status


@shared_task(name="analytics.tasks.backtests_abandoned_sweep")
def backtests_abandoned_sweep() -> int:
    """Fail (uncharged) the running jobs whose worker stopped sending heartbeats."""
    return backtests_abandoned_fail()


@shared_task(name="analytics.tasks.live_analytics_retention")
def live_analytics_retention() -> dict[str, int]:
    """Delete stored OFI seconds and VPIN buckets older than ANALYTICS_LIVE_RETENTION_DAYS
    (bounded batches); 0 keeps them forever."""
    deleted = {"ofi_seconds": 0, "vpin_buckets": 0}
    days = settings.ANALYTICS_LIVE_RETENTION_DAYS
    if days:
        before = timezone.now() - timedelta(days=days)
        deleted["ofi_seconds"] = ofi_seconds_prune(before=before)
        deleted["vpin_buckets"] = vpin_buckets_prune(before=before)
    logger.info("live analytics retention: %s", deleted)
    return deleted
