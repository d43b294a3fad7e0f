"""Celery tasks of analytics. They take ids, never model instances (the row is re-read)."""

from __future__ import annotations

from celery import shared_task

from analytics.services import backtest_execute


@shared_task(name="analytics.tasks.backtest_run", acks_late=True)
def backtest_run(job_id: int) -> str | None:
    """Run one backtest job; its progress, result or error land on the job's row."""
    job = backtest_execute(backtest_id=job_id)
    return None if job is None else job.status
