"""Plans and their limits, Stripe customers and subscriptions, overrides, webhooks, usage.

Stripe is the source of truth for what a customer pays for; these rows are a
local copy refreshed from Stripe (webhooks and the reconcile task), and
`billing.entitlements` turns them into what an organization may do.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization

FREE_PLAN_CODE = "free"
# Order-book depth a plan may grant: the stream keeps 50 levels a side and never sends
# fewer than the 10 its checksum covers (marketdata.streaming.books).
BOOK_DEPTH_MIN = 10
BOOK_DEPTH_MAX = 50
CONFLATE_FLOOR_MAX_MS = 60_000  # the largest conflate_ms a subscription may ask for


class Plan(models.Model):
    """What a customer buys. Rows are seeded by a migration and edited in the admin."""

    code = models.SlugField(max_length=40, unique=True, help_text="Stable identifier used in code.")
    name = models.CharField(max_length=80)
    description = models.CharField(max_length=240, blank=True)
    price_cents = models.PositiveIntegerField(default=0, help_text="Monthly price in cents.")
    currency = models.CharField(max_length=3, default="usd")
    stripe_price_id = models.CharField(
        max_length=100,
        blank=True,
        help_text="Stripe recurring price (price_...). Falls back to the STRIPE_PRICE_<CODE> "
        "environment variable when empty.",
    )
    is_public = models.BooleanField(default=True, help_text="Listed on the pricing page.")
    requests_per_minute = models.PositiveIntegerField()
    ws_connections = models.PositiveIntegerField("concurrent WebSocket connections")
    ws_subscriptions = models.PositiveIntegerField("subscriptions per connection")
    stream_delay_seconds = models.PositiveIntegerField(default=0)
    history_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Depth of history in days; empty means unlimited."
    )
    api_keys = models.PositiveIntegerField("API keys allowed")
    analytics = models.BooleanField("analytics allowed", default=True)
    backtests_per_day = models.PositiveIntegerField(default=0)
    alert_rules = models.PositiveIntegerField(
        "alert rules allowed", default=3, help_text="Alert rules an organization may keep."
    )
    book_depth = models.PositiveIntegerField(
        "order book depth",
        default=BOOK_DEPTH_MAX,
        validators=[MinValueValidator(BOOK_DEPTH_MIN), MaxValueValidator(BOOK_DEPTH_MAX)],
        help_text="Most levels a side a book read or subscription may ask for "
        f"({BOOK_DEPTH_MIN} to {BOOK_DEPTH_MAX}).",
    )
    stream_conflate_floor_ms = models.PositiveIntegerField(
        "stream conflation floor (ms)",
        default=0,
        validators=[MaxValueValidator(CONFLATE_FLOOR_MAX_MS)],
        help_text="Least conflate_ms a stream subscription gets: at most one frame per "
        "channel this often. 0: every update as it comes.",
    )

    class Meta:
        ordering = ["price_cents", "pk"]

    def __str__(self) -> str:
        return self.name

    @property
    def price_id(self) -> str:
        """The Stripe price to sell this plan with: the row's, else the environment's."""
        return self.stripe_price_id or settings.BILLING_STRIPE_PRICES.get(self.code, "")

    @property
    def is_free(self) -> bool:
        return self.price_cents == 0

    @property
    def price_display(self) -> str:
        return (
            f"{self.price_cents / 100:,.0f}"
            if self.price_cents % 100 == 0
            else (f"{self.price_cents / 100:,.2f}")
        )


class StripeCustomer(models.Model):
    """The one Stripe customer that pays for an organization."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="stripe_customer"
    )
    stripe_customer_id = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return f"{self.stripe_customer_id} ({self.organization})"


class SubscriptionStatus(models.TextChoices):
    """Stripe's subscription statuses, verbatim."""

    INCOMPLETE = "incomplete", "Incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired", "Incomplete, expired"
    TRIALING = "trialing", "Trialing"
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    CANCELED = "canceled", "Canceled"
    UNPAID = "unpaid", "Unpaid"
    PAUSED = "paused", "Paused"


class Subscription(models.Model):
    """Local copy of one Stripe subscription. An organization may accumulate several
    over time (cancel, subscribe again); entitlements pick the one that grants access."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="subscriptions"
    )
    stripe_subscription_id = models.CharField(max_length=100, unique=True)
    stripe_customer_id = models.CharField(max_length=100)
    stripe_price_id = models.CharField(max_length=100, blank=True)
    plan = models.ForeignKey(
        Plan, null=True, blank=True, on_delete=models.PROTECT, related_name="subscriptions"
    )
    status = models.CharField(max_length=24, choices=SubscriptionStatus.choices)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    canceled_at = models.DateTimeField(null=True, blank=True)
    past_due_since = models.DateTimeField(
        null=True, blank=True, help_text="When Stripe first reported past_due; starts the grace."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    synced_at = models.DateTimeField(default=timezone.now, help_text="Last read from Stripe.")

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["organization", "status"])]

    def __str__(self) -> str:
        return f"{self.stripe_subscription_id} ({self.status})"


class PlanOverride(models.Model):
    """An operator's grant of a plan, which beats any subscription until it expires."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="plan_overrides"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="overrides")
    until = models.DateTimeField(
        null=True, blank=True, help_text="Empty means until someone removes it."
    )
    reason = models.CharField(max_length=240)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.plan} for {self.organization}"

    @property
    def is_active(self) -> bool:
        return self.until is None or self.until > timezone.now()


class WebhookEvent(models.Model):
    """Every delivery to the webhook endpoint, stored raw before anything else happens."""

    class Outcome(models.TextChoices):
        RECEIVED = "received", "Received"
        INVALID_SIGNATURE = "invalid_signature", "Invalid signature"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored (type not handled)"
        DUPLICATE = "duplicate", "Duplicate delivery"
        FAILED = "failed", "Failed"

    # Blank until the signature is verified, so a forged request can never claim the
    # id of a real event and make us drop the genuine delivery as a "duplicate".
    stripe_event_id = models.CharField(max_length=100, blank=True, db_index=True)
    type = models.CharField(max_length=100, blank=True, db_index=True)
    raw_body = models.TextField()
    payload = models.JSONField(null=True, blank=True)
    outcome = models.CharField(
        max_length=24, choices=Outcome.choices, default=Outcome.RECEIVED, db_index=True
    )
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_event_id"],
                condition=~Q(stripe_event_id=""),
                name="unique_verified_stripe_event",
            )
        ]

    def __str__(self) -> str:
        return f"{self.stripe_event_id or 'unverified'} {self.type} ({self.outcome})"


class UsageDaily(models.Model):
    """Per-organization daily usage, rolled up from the Redis counters by Celery."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="usage")
    date = models.DateField()
    api_requests = models.PositiveBigIntegerField(default=0)
    stream_messages = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-date"]
        verbose_name_plural = "daily usage"
        constraints = [
            models.UniqueConstraint(fields=["organization", "date"], name="unique_usage_day")
        ]

    def __str__(self) -> str:
        return f"{self.organization} {self.date}"


class UpgradeRequest(models.Model):
    """A customer's request for a plan when online payment is not configured.

    Operators read it in the admin and grant the plan (a PlanOverride) or answer by
    email. `operator_notes` is for operators only: no customer page shows it.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        GRANTED = "granted", "Granted"
        DECLINED = "declined", "Declined"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="upgrade_requests"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="upgrade_requests")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    contact_email = models.EmailField()
    message = models.TextField(blank=True, max_length=2000)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    operator_notes = models.TextField(
        blank=True, help_text="Internal: never shown to the customer."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    handled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.plan} for {self.organization} ({self.get_status_display()})"
