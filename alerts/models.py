"""Alert rules (tenant data), their firings and the delivery log.

Rules are evaluated inside the feed runner (alerts.live), never by polling these
tables per tick: the runner reloads the enabled rules every few seconds into an
in-memory index. A firing is published on the organization's ``alerts`` stream at
once, then recorded here with one delivery row per channel (email, webhook) that a
Celery task works through with retries (alerts.tasks).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import Organization
from marketdata.models import Exchange, Instrument


class AlertKind(models.TextChoices):
    PRICE = "price", "Price crosses a level"
    PERCENT_MOVE = "percent_move", "Percent move in a window"
    OFI = "ofi", "OFI crosses a threshold"
    VPIN = "vpin", "VPIN crosses a threshold"
    FEED_DOWN = "feed_down", "Feed down for a venue"


class Direction(models.TextChoices):
    ABOVE = "above", "Above (rises through)"
    BELOW = "below", "Below (falls through)"


class AlertRule(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="alert_rules"
    )
    name = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=16, choices=AlertKind.choices)
    exchange = models.ForeignKey(Exchange, on_delete=models.PROTECT, related_name="+")
    instrument = models.ForeignKey(
        Instrument,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Empty for feed_down, which watches the whole venue.",
    )
    direction = models.CharField(max_length=8, choices=Direction.choices, blank=True)
    threshold = models.FloatField(
        null=True,
        blank=True,
        help_text="Price level; percent for percent_move; OFI or VPIN value. Empty for feed_down.",
    )
    window_seconds = models.PositiveIntegerField(
        default=0, help_text="percent_move: the window; feed_down: how long down before firing."
    )
    cooldown_seconds = models.PositiveIntegerField(
        default=60, help_text="After a firing, crossings within this time are not reported."
    )
    enabled = models.BooleanField(default=True)
    email = models.EmailField(blank=True, help_text="Send each firing here (empty: no email).")
    webhook_url = models.URLField(
        max_length=500, blank=True, help_text="POST each firing here, signed (empty: none)."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            models.Index(fields=["exchange", "enabled"]),
        ]

    def __str__(self) -> str:
        return self.name or f"{self.get_kind_display()} #{self.pk}"


class AlertWebhookSecret(models.Model):
    """The organization's webhook signing secret. Kept readable (not hashed): we sign with
    it, and customers verify with the same value, as with Stripe's endpoint secrets."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="alert_webhook_secret"
    )
    secret = models.CharField(max_length=80)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    rotated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"webhook secret of {self.organization}"


class AlertFiring(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="alert_firings"
    )
    rule = models.ForeignKey(
        AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="firings"
    )
    event_id = models.CharField(max_length=40, unique=True, help_text="Sent with every copy.")
    tick_ts = models.BigIntegerField(help_text="Time of the triggering tick (ms).")
    fired_at = models.DateTimeField()
    payload = models.JSONField(help_text="The record every channel carries.")

    class Meta:
        ordering = ["-fired_at", "-pk"]
        indexes = [models.Index(fields=["organization", "-fired_at"])]

    def __str__(self) -> str:
        return f"{self.event_id} ({self.payload.get('rule_name', '')})"


class AlertDelivery(models.Model):
    class Channel(models.TextChoices):
        EMAIL = "email"
        WEBHOOK = "webhook"

    class Status(models.TextChoices):
        PENDING = "pending"
        RETRYING = "retrying"
        DELIVERED = "delivered"
        FAILED = "failed"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="alert_deliveries"
    )
    firing = models.ForeignKey(AlertFiring, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    target = models.CharField(max_length=500)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    delivered_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.channel} to {self.target}: {self.status}"
