"""The Celery app, configured from Django settings (the CELERY_ namespace)."""

import logging
import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantsaas.settings")

app = Celery("quantsaas")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Task counts and durations, queue depths on METRICS_PORT (quantsaas/metrics/worker.py).
from quantsaas.metrics.worker import worker_signals_connect  # noqa: E402

worker_signals_connect()


@signals.celeryd_init.connect
def _banner_as_a_log_line(sender: object = None, instance: Any = None, **_kwargs: Any) -> None:
    """With LOG_FORMAT=json the worker's start banner (plain text on stdout) would be the
    one non-JSON output: it becomes a log line."""
    if os.environ.get("LOG_FORMAT") == "json" and instance is not None:
        instance.quiet = True
        logging.getLogger("celery.worker").info(
            "worker %s starting", sender, extra={"concurrency": instance.concurrency}
        )
