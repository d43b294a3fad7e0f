"""Writes for analytics: submitting and running backtest jobs, storing live OFI and VPIN."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, AuditLog, Organization, User
from accounts.services.audit import audit_log_record
from analytics import backtest as backtest_lib
from analytics import selectors
from analytics.models import Backtest, OfiSecond, VpinBucket
from billing.entitlements import entitlements_for, plans_allowing
from marketdata import selectors as md_selectors
from marketdata.candles import INTERVALS_MS
from quantsaas.timeutil import ms_to_dt

logger = logging.getLogger(__name__)

MAX_BARS = 500_000
EQUITY_POINTS = 2_000  # the stored equity curve is thinned to at most this many points


class BacktestNotAllowed(Exception):
    """The plan allows no (more) backtests today; `plans` name those that would."""

    def __init__(self, message: str, *, plans: list[str]) -> None:
        super().__init__(message)
        self.plans = plans


class BacktestFailed(Exception):
    """A user-facing reason the job cannot produce a result (stored as its error)."""


def _utc_day_start(now: datetime) -> datetime:
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


@transaction.atomic
def backtest_submit(
    *,
    organization: Organization,
    created_by: User | None,
    params: dict,
    actor_api_key: ApiKey | None = None,
    ip_address: str | None = None,
) -> Backtest:
    """Record a queued job, audit it, and enqueue it once the row is committed.

    `params` is the validated request (analytics.api.backtests.BacktestIn). The daily
    allowance (billing's backtests_per_day, per UTC day) is checked under a lock on the
    organization row so concurrent submissions cannot overshoot it; a refused submission
    leaves neither a job nor an audit row.
    """
    allowance = entitlements_for(organization=organization).backtests_per_day
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    now = timezone.now()
    used = selectors.backtests_since_count(organization=organization, since=_utc_day_start(now))
    if used >= allowance:
        message = (
            "Your plan does not include backtests."
            if allowance == 0
            else f"Your plan includes {allowance} backtests a day; today's are used."
        )
        raise BacktestNotAllowed(
            message,
            plans=plans_allowing(predicate=lambda plan: plan.backtests_per_day > allowance),
        )
    job = Backtest.objects.create(
        organization=organization,
        created_by=created_by if created_by is not None and created_by.is_authenticated else None,
        strategy=params["strategy"],
        params=params,
        created_at=now,
    )
    instrument = f"{params['exchange']}:{params['symbol']}"
    audit_log_record(
        organization=organization,
        action=AuditLog.Action.BACKTEST_SUBMITTED,
        actor=created_by,
        actor_api_key=actor_api_key,
        target=f"backtest {job.pk}: {job.strategy} on {instrument}",
        details={"backtest_id": job.pk, "instrument": instrument, "strategy": job.strategy},
        ip_address=ip_address,
    )
    from analytics.tasks import backtest_run

    transaction.on_commit(lambda: backtest_run.delay(job.pk))
    return job


def _progress(job_id: int, progress: float) -> None:
    # Outside any transaction: a client polling the job sees it move.
    Backtest.objects.filter(pk=job_id).update(progress=progress)


def _finite(value):
    return value if value is None or math.isfinite(value) else None


def _equity_points(ts: np.ndarray, equity: np.ndarray) -> list[list]:
    step = max(1, math.ceil(equity.size / EQUITY_POINTS))
    index = np.arange(0, equity.size, step)
    if index[-1] != equity.size - 1:
        index = np.append(index, equity.size - 1)  # the final value is always there
    return [[int(ts[i]), float(equity[i])] for i in index]


def _claim(backtest_id: int) -> bool:
    """Move a queued job to running; True if this worker got it.

    A job left `running` longer than the task time limit belonged to a worker that died
    (tasks are acked late, so the broker redelivers it): it may be claimed again.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    queued = Backtest.objects.filter(pk=backtest_id, status=Backtest.Status.QUEUED)
    abandoned = Backtest.objects.filter(
        pk=backtest_id, status=Backtest.Status.RUNNING, started_at__lt=stale
    )
    for jobs in (queued, abandoned):
        if jobs.update(status=Backtest.Status.RUNNING, started_at=now, progress=0.0, error=""):
            return True
    return False


def _simulate(job_id: int, params: dict) -> dict:
    instrument = md_selectors.instrument_get(
        exchange_id=params["exchange"], symbol=params["symbol"]
    )
    if instrument is None:
        raise BacktestFailed(f"Unknown market {params['exchange']} {params['symbol']}.")
    interval = params["interval"]
    rows = md_selectors.candles_between(
        instrument=instrument,
        interval=interval,
        start_ms=params["start"],
        end_ms=params["end"],
        limit=MAX_BARS + 1,
    )
    if len(rows) > MAX_BARS:
        raise BacktestFailed(f"More than {MAX_BARS} bars; use a longer interval or range.")
    if len(rows) < 2:
        raise BacktestFailed("Fewer than two candles in the range: nothing to test.")
    _progress(job_id, 0.4)
    ts = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    close = np.fromiter((row[4] for row in rows), dtype=float, count=len(rows))
    try:
        result = backtest_lib.backtest(
            params["strategy"],
            ts,
            close,
            interval_ms=INTERVALS_MS[interval],
            params=params.get("params") or {},
            fee_bp=params["fee_bp"],
            slippage_bp=params["slippage_bp"],
            allow_short=params["allow_short"],
        )
    except ValueError as exc:
        raise BacktestFailed(str(exc)) from exc
    _progress(job_id, 0.8)
    return {
        "metrics": {key: _finite(value) for key, value in result.metrics.items()},
        "start": int(ts[0]),
        "end": int(ts[-1]) + INTERVALS_MS[interval],
        "equity": _equity_points(result.ts_ms, result.equity),
    }


def backtest_execute(*, backtest_id: int) -> Backtest | None:
    """Run a queued job to its end, recording progress, then the result or the error.

    Idempotent: a job someone else is running, or one that has finished, is left alone.
    """
    if not _claim(backtest_id):
        return None
    job = Backtest.objects.get(pk=backtest_id)
    try:
        result = _simulate(job.pk, job.params)
    except BacktestFailed as exc:
        status, result, error = Backtest.Status.FAILED, None, str(exc)
    except Exception:
        logger.exception("backtest %s crashed", backtest_id)
        status, result, error = Backtest.Status.FAILED, None, "Internal error; it was logged."
    else:
        status, error = Backtest.Status.SUCCEEDED, ""
    Backtest.objects.filter(pk=job.pk).update(
        status=status,
        result=result,
        error=error,
        progress=1.0,
        finished_at=timezone.now(),
    )
    job.refresh_from_db()
    return job


# --- the feed runner's analytics ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OfiRow:
    instrument_id: int
    ts_ms: int
    ofi: float
    updates: int


@dataclass(frozen=True, slots=True)
class VpinRow:
    instrument_id: int
    ts_ms: int
    bucket_volume: float
    window: int
    bar_ms: int
    buy_volume: float
    sell_volume: float
    vpin: float | None
    sigma: float | None


@transaction.atomic
def live_analytics_store(*, ofi: Iterable[OfiRow], vpin: Iterable[VpinRow]) -> None:
    """Persist what the feed runner published. A second already stored (a restart inside
    it) keeps its first row: both are partial, and the stream has already sent the first."""
    OfiSecond.objects.bulk_create(
        [
            OfiSecond(
                instrument_id=r.instrument_id, ts=ms_to_dt(r.ts_ms), ofi=r.ofi, updates=r.updates
            )
            for r in ofi
        ],
        ignore_conflicts=True,
    )
    VpinBucket.objects.bulk_create(
        [
            VpinBucket(
                instrument_id=r.instrument_id,
                ts=ms_to_dt(r.ts_ms),
                bucket_volume=r.bucket_volume,
                window=r.window,
                bar_ms=r.bar_ms,
                buy_volume=r.buy_volume,
                sell_volume=r.sell_volume,
                vpin=r.vpin,
                sigma=r.sigma,
            )
            for r in vpin
        ]
    )
