"""Celery worker metrics: tasks by name and outcome, their durations, and the queues.

Tasks run in the prefork pool's child processes, so the counts are kept in prometheus
multiprocess mode (files in PROMETHEUS_MULTIPROC_DIR, a temporary folder made at worker
start when unset) and the main process serves them all on METRICS_PORT. prometheus_client
picks its value store when imported; ``_on_worker_init`` has it pick again once the
folder is set, before it creates the task metrics.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any

from celery import Task, signals

logger = logging.getLogger(__name__)

_metrics: dict[str, Any] = {}
_started: dict[str, float] = {}


def _create() -> None:
    from prometheus_client import Counter, Histogram

    _metrics["tasks"] = Counter(
        "quantsaas_celery_tasks", "Tasks finished, by task and outcome.", ["task", "outcome"]
    )
    _metrics["duration"] = Histogram(
        "quantsaas_celery_task_duration_seconds",
        "Task run time, by task.",
        ["task"],
        buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800),
    )


def _on_worker_init(**_kwargs: Any) -> None:
    from django.conf import settings

    if not settings.METRICS_PORT:
        return
    if not _multiproc_dir():
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="qs-worker-metrics-")
    from prometheus_client import values

    # The library chose its value store when first imported (Django's setup may import it
    # through app modules): choose again now the folder is set, for the metrics made below.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]  # unannotated in prometheus_client
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from marketdata.feeds.metrics import metrics_serve
    from quantsaas.metrics.queues import QueueCollector

    _create()
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated in prometheus_client
    registry.register(QueueCollector())
    metrics_serve(registry, port=settings.METRICS_PORT, what="worker")


def _multiproc_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def _on_prerun(task_id: str | None = None, **_kwargs: Any) -> None:
    if _metrics and task_id:
        _started[task_id] = time.monotonic()


def _on_postrun(
    task_id: str | None = None,
    task: Task[Any, Any] | None = None,
    state: str | None = None,
    **_kwargs: Any,
) -> None:
    if not _metrics or task is None:
        return
    started = _started.pop(task_id, None) if task_id else None
    if started is not None:
        _metrics["duration"].labels(task.name).observe(time.monotonic() - started)
    outcome = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}
    _metrics["tasks"].labels(task.name, outcome.get(state or "", (state or "other").lower())).inc()


def worker_signals_connect() -> None:
    """Called from the Celery app module; the handlers do nothing without METRICS_PORT."""
    signals.worker_init.connect(_on_worker_init, weak=False)
    signals.task_prerun.connect(_on_prerun, weak=False)
    signals.task_postrun.connect(_on_postrun, weak=False)
