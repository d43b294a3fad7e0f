"""Backtest jobs (tenant data) and the stored live analytics (global, like market data).

OFI per second and VPIN buckets are written by the feed runner as it publishes them on the
``ofi`` and ``vpin`` channels, so the REST history serves the very numbers the live stream
sent (docs/decisions.md).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import Organization
from marketdata.models import Instrument


class Backtest(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="backtests"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    strategy = models.CharField(max_length=32)
    params = models.JSONField(default=dict, help_text="The request as validated.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0, help_text="0 to 1.")
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of the worker running the job."
    )
    charged = models.BooleanField(
        default=True,
        help_text="Counts against the daily allowance (not when the worker died under it).",
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["organization", "-created_at"], name="an_bt_org_created")]

    def __str__(self) -> str:
        return f"backtest {self.pk} ({self.strategy}, {self.status})"


class OfiSecond(models.Model):
    """Order-flow imbalance of one epoch-aligned second that saw book updates."""

    instrument = models.ForeignKey(
        Instrument, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    ts = models.DateTimeField(help_text="Start of the second (UTC).")
    ofi = models.FloatField()
    updates = models.PositiveIntegerField(default=0, help_text="Book updates in the second.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["instrument", "ts"], name="an_ofi_instr_ts_uniq")
        ]

    def __str__(self) -> str:
        return f"ofi {self.instrument_id} {self.ts:%Y-%m-%d %H:%M:%S}"


class VpinBucket(models.Model):
    """One completed volume bucket of the live VPIN of an instrument.

    Buckets that share a timestamp (one bar can complete several) are ordered by id, the
    order they were written in."""

    instrument = models.ForeignKey(
        Instrument, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    ts = models.DateTimeField(help_text="Last trade of the bar that completed the bucket.")
    bucket_volume = models.FloatField()
    window = models.PositiveIntegerField()
    bar_ms = models.PositiveIntegerField()
    buy_volume = models.FloatField()
    sell_volume = models.FloatField()
    vpin = models.FloatField(null=True, blank=True)
    sigma = models.FloatField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["instrument", "bucket_volume", "ts"], name="an_vpin_instr_bv_ts")
        ]

    def __str__(self) -> str:
        return f"vpin {self.instrument_id} {self.ts:%Y-%m-%d %H:%M:%S}"
