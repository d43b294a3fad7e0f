"""Prometheus metrics of every process kind (docs/operations.md, Metrics).

Each process exposes its own registry: web processes on ``/metrics`` (a staff session or
``METRICS_TOKEN``), the feed runner and the Celery worker on ``METRICS_PORT``. Nothing
here is shared between processes: Prometheus scrapes each one and sums.
"""
