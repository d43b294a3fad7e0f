"""Writes for analytics: submitting and running backtest jobs, storing live OFI and VPIN."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import ApiKey, AuditLog, Organization, User
from accounts.services.audit import audit_log_record
from analytics import selectors
from analytics.backtest_process import BacktestLimitExceeded, backtest_in_child
from analytics.models import Backtest, OfiSecond, VpinBucket
from billing.entitlements import entitlements_for, plans_allowing
from marketdata import selectors as md_selectors
from marketdata.candles import INTERVALS_MS
from quantsaas.timeutil import ms_to_dt

logger = logging.getLogger(__name__)

MAX_BARS = 500_000
# Bars x parameter sets one job may evaluate, per plan code (docs/decisions.md). A job runs
# one parameter set, so this caps its bars; the rolling statistics are O(bars), so a
# strategy's window does not multiply the work. Plans not named here get the free cap.
BAR_CAPS = {"free": 20_000, "pro": MAX_BARS, "enterprise": MAX_BARS}
WORKER_DIED = (
    "The worker running this job stopped before it finished; the job was not counted "
    "against today's allowance. Submit it again."
)


def backtest_bar_cap(*, plan: str) -> int:
    return BAR_CAPS.get(plan, BAR_CAPS["free"])


class BacktestNotAllowed(Exception):
    """The plan allows no (more) backtests today; `plans` name those that would."""

    def __init__(self, message: str, *, plans: list[str]) -> None:
        super().__init__(message)
        self.plans = plans


class BacktestTooLarge(Exception):
    """The request implies more bars than the plan's per-job cap (a 400, not charged)."""


class BacktestOutcome(TypedDict):
    """A finished job's stored result (Backtest.result), as the API returns it."""

    metrics: dict[str, float | None]
    start: int
    end: int
    equity: list[list[float]]


class BacktestFailed(Exception):
    """A user-facing reason the job cannot produce a result (stored as its error)."""


def _utc_day_start(now: datetime) -> datetime:
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


@transaction.atomic
def backtest_submit(
    *,
    organization: Organization,
    created_by: User | None,
    params: dict[str, Any],
    actor_api_key: ApiKey | None = None,
    ip_address: str | None = None,
) -> Backtest:
    """Record a queued job, audit it, and enqueue it once the row is committed.

    `params` is the validated request (analytics.api.backtests.BacktestIn). The daily
    allowance (billing's backtests_per_day, per UTC day) is checked under a lock on the
    organization row so concurrent submissions cannot overshoot it; a refused submission
    leaves neither a job nor an audit row.
    """
    entitlements = entitlements_for(organization=organization)
    allowance = entitlements.backtests_per_day
    bars = -(-(params["end"] - params["start"]) // INTERVALS_MS[params["interval"]])
    cap = backtest_bar_cap(plan=entitlements.plan)
    if bars > cap:
        raise BacktestTooLarge(
            f"The range holds up to {bars:,} {params['interval']} bars; your plan runs "
            f"{cap:,} per job. Use a longer interval or a shorter range."
        )
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
    Backtest.objects.filter(pk=job_id).update(progress=progress, heartbeat_at=timezone.now())


def _heartbeat(job_id: int) -> None:
    Backtest.objects.filter(pk=job_id, status=Backtest.Status.RUNNING).update(
        heartbeat_at=timezone.now()
    )


def _claim(backtest_id: int) -> bool:
    """Move a queued job to running; True if this worker got it.

    A job still `running` without a heartbeat for BACKTEST_STALE_SECONDS belonged to a
    worker that died; tasks are acked late, so the broker may redeliver it before the
    sweep marks it failed, and then it may be claimed again.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.BACKTEST_STALE_SECONDS)
    queued = Backtest.objects.filter(pk=backtest_id, status=Backtest.Status.QUEUED)
    abandoned = Backtest.objects.filter(
        pk=backtest_id, status=Backtest.Status.RUNNING, heartbeat_at__lt=stale
    )
    for jobs in (queued, abandoned):
        claimed = jobs.update(
            status=Backtest.Status.RUNNING, started_at=now, heartbeat_at=now, progress=0.0, error=""
        )
        if claimed:
            return True
    return False


def backtests_abandoned_fail(*, organization: Organization | None = None) -> int:
    """Mark failed, and not charged, every running job whose worker stopped beating.

    Called by a periodic task and before a job is read, so a client polling a job whose
    worker was killed (deploy, OOM, lost machine) learns it, instead of `running` forever.
    """
    stale = timezone.now() - timedelta(seconds=settings.BACKTEST_STALE_SECONDS)
    silent = Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, started_at__lt=stale)
    jobs = Backtest.objects.filter(silent, status=Backtest.Status.RUNNING)  # null: pre-heartbeat
    if organization is not None:
        jobs = jobs.filter(organization=organization)
    count = jobs.update(
        status=Backtest.Status.FAILED,
        error=WORKER_DIED,
        charged=False,
        finished_at=timezone.now(),
    )
    if count:
        logger.warning("marked %s backtest job(s) failed: their worker stopped", count)
    return count


def _simulate(job_id: int, params: dict[str, Any]) -> BacktestOutcome:
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
    del rows
    try:
        result = backtest_in_child(
            strategy=params["strategy"],
            ts=ts,
            close=close,
            options={
                "interval_ms": INTERVALS_MS[interval],
                "params": params.get("params") or {},
                "fee_bp": params["fee_bp"],
                "slippage_bp": params["slippage_bp"],
                "allow_short": params["allow_short"],
            },
            cpu_seconds=settings.BACKTEST_CPU_SECONDS,
            memory_mb=settings.BACKTEST_MEMORY_MB,
            heartbeat=lambda: _heartbeat(job_id),
            heartbeat_seconds=settings.BACKTEST_HEARTBEAT_SECONDS,
        )
    except (ValueError, BacktestLimitExceeded) as exc:
        raise BacktestFailed(str(exc)) from exc
    _progress(job_id, 0.8)
    return {
        "metrics": result["metrics"],
        "start": int(ts[0]),
        "end": int(ts[-1]) + INTERVALS_MS[interval],
        "equity": result["equity"],
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
