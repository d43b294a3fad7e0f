"""Receiving Stripe webhooks, the dj-stripe way, verified first.

1. Verify the signature with OUR configured secret (never one the request names).
   A delivery that fails is recorded as metadata only (size, address, reason):
   its body is whatever anyone posted, and storing it would let a flood of junk
   fill the database.
2. Store the verified event, deduplicating on Stripe's event id.
3. Process inside a transaction: treat the event as "something changed" and
   re-read the subscription from Stripe, then record the outcome.
Unhandled types are acknowledged (2xx) and recorded as ignored. Rows older than
the retention are pruned by a periodic task (`webhook_events_prune`).
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from billing.models import StripeCustomer, WebhookEvent
from billing.notifications import payment_failed_notify
from billing.services.subscriptions import UnknownCustomer, subscription_sync

logger = logging.getLogger(__name__)

Outcome = WebhookEvent.Outcome
DONE = frozenset({Outcome.PROCESSED, Outcome.IGNORED})


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    message: str
    genuine: bool = False  # a verified first delivery: the sender proved it is Stripe


def _stripe_id(value: object) -> str | None:
    """An id field that may be a plain id or an expanded object."""
    if isinstance(value, dict):
        return value.get("id")
    return value or None  # type: ignore[return-value]


def _invoice_subscription_id(invoice: dict[str, Any]) -> str | None:
    # API 2025-03-31 moved it under parent.subscription_details; older versions had it on top.
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return _stripe_id(details.get("subscription")) or _stripe_id(invoice.get("subscription"))


def _on_checkout_completed(obj: dict[str, Any]) -> None:
    subscription_id = _stripe_id(obj.get("subscription"))
    if obj.get("mode") == "subscription" and subscription_id:
        subscription_sync(stripe_subscription_id=subscription_id)


def _on_subscription_changed(obj: dict[str, Any]) -> None:
    subscription_sync(stripe_subscription_id=obj["id"])


def _on_invoice_paid(obj: dict[str, Any]) -> None:
    subscription_id = _invoice_subscription_id(obj)
    if subscription_id:
        subscription_sync(stripe_subscription_id=subscription_id)


def _on_invoice_payment_failed(obj: dict[str, Any]) -> None:
    _on_invoice_paid(obj)
    customer = StripeCustomer.objects.filter(stripe_customer_id=_stripe_id(obj.get("customer")))
    organization_id = customer.values_list("organization_id", flat=True).first()
    if organization_id is None:
        raise UnknownCustomer(f"Stripe customer {obj.get('customer')} belongs to no organization.")
    invoice = {
        "amount_due": obj.get("amount_due") or 0,
        "currency": obj.get("currency") or "usd",
        "hosted_invoice_url": obj.get("hosted_invoice_url") or "",
    }
    # After commit: a rolled-back attempt must not email anyone.
    transaction.on_commit(
        lambda: payment_failed_notify(organization_id=organization_id, invoice=invoice)
    )


HANDLERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "checkout.session.completed": _on_checkout_completed,
    "customer.subscription.created": _on_subscription_changed,
    "customer.subscription.updated": _on_subscription_changed,
    "customer.subscription.deleted": _on_subscription_changed,
    "invoice.paid": _on_invoice_paid,
    "invoice.payment_failed": _on_invoice_payment_failed,
}


def _failure_record(
    *, outcome: str, reason: str, raw_body: bytes, ip_address: str | None, event_type: str = ""
) -> None:
    """Metadata of a delivery that is not kept: never its body."""
    WebhookEvent.objects.create(
        raw_body="",
        type=event_type[:100],
        outcome=outcome,
        error=f"{reason} ({len(raw_body)} bytes from {ip_address or 'an unknown address'})",
        processed_at=timezone.now(),
    )


def webhook_receive(
    *, raw_body: bytes, signature: str | None, ip_address: str | None = None
) -> WebhookAnswer:
    """Verify, store, deduplicate and process one delivery; the answer for Stripe."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        _failure_record(
            outcome=Outcome.FAILED,
            reason="STRIPE_WEBHOOK_SECRET is not configured.",
            raw_body=raw_body,
            ip_address=ip_address,
        )
        return WebhookAnswer(503, "Webhooks are not configured on this server.")
    try:
        stripe.Webhook.construct_event(raw_body, signature or "", secret)
        payload = json.loads(raw_body)
        event_id, event_type = str(payload["id"]), str(payload["type"])
    except (ValueError, KeyError, TypeError, stripe.SignatureVerificationError) as exc:
        # The exception's class and message only: they describe the failure, not the body.
        _failure_record(
            outcome=Outcome.INVALID_SIGNATURE,
            reason=f"{type(exc).__name__}: {str(exc)[:200]}",
            raw_body=raw_body,
            ip_address=ip_address,
        )
        return WebhookAnswer(400, "Invalid signature or payload.")

    try:
        with transaction.atomic():
            row = WebhookEvent.objects.create(
                stripe_event_id=event_id,
                type=event_type,
                raw_body=raw_body.decode("utf-8", errors="replace"),
                payload=payload,
            )
    except IntegrityError:
        original = WebhookEvent.objects.get(stripe_event_id=event_id)
        _failure_record(
            outcome=Outcome.DUPLICATE,
            reason=f"Duplicate delivery of #{original.pk}.",
            raw_body=raw_body,
            ip_address=ip_address,
            event_type=event_type,
        )
        if original.outcome in DONE:
            return WebhookAnswer(200, "Duplicate; already processed.")
        row = original  # the earlier delivery failed or is in flight: (re)try it under its lock
    if webhook_event_process(webhook_event_id=row.pk):
        return WebhookAnswer(200, "Processed.", genuine=True)
    return WebhookAnswer(500, "Processing failed; Stripe will retry.", genuine=True)


# Outcomes that say nothing worth keeping beyond a week: deliveries we did not accept.
_REFUSED = (Outcome.INVALID_SIGNATURE, Outcome.DUPLICATE)
PRUNE_BATCH = 5_000


def webhook_events_prune(*, now: datetime | None = None) -> int:
    """Delete deliveries past their retention; the number deleted.

    Verified events are kept BILLING_WEBHOOK_RETENTION_DAYS (Stripe itself keeps
    events 30 days; ours answer "what did Stripe tell us" for a quarter), refused
    deliveries BILLING_WEBHOOK_REFUSED_RETENTION_DAYS. Deleted in batches, so a
    large backlog never holds long locks.
    """
    now = now or timezone.now()
    kept = now - timedelta(days=settings.BILLING_WEBHOOK_RETENTION_DAYS)
    refused_kept = now - timedelta(days=settings.BILLING_WEBHOOK_REFUSED_RETENTION_DAYS)
    expired = WebhookEvent.objects.filter(received_at__lt=kept) | WebhookEvent.objects.filter(
        outcome__in=_REFUSED, received_at__lt=refused_kept
    )
    deleted = 0
    while True:
        batch = list(expired.order_by("pk").values_list("pk", flat=True)[:PRUNE_BATCH])
        if not batch:
            return deleted
        deleted += WebhookEvent.objects.filter(pk__in=batch).delete()[0]


def _event_object(event: WebhookEvent) -> dict[str, Any]:
    """The Stripe object the event is about; every verified event stored its payload."""
    if event.payload is None:
        raise ValueError(f"Webhook event {event.pk} has no payload.")
    data: dict[str, Any] = event.payload["data"]["object"]
    return data


def webhook_event_process(*, webhook_event_id: int, force: bool = False) -> bool:
    """Apply one verified event; True when it ended processed or ignored.

    `force` re-applies an already processed event (the admin's re-process action);
    harmless because handlers only re-read Stripe's current state.
    """
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.select_for_update().get(pk=webhook_event_id)
            if not event.stripe_event_id:
                return False  # never verified: nothing to apply
            if event.outcome in DONE and not force:
                return True
            handler = HANDLERS.get(event.type)
            event.attempts += 1
            event.error = ""
            if handler is None:
                event.outcome = Outcome.IGNORED
            else:
                try:
                    with transaction.atomic():
                        handler(_event_object(event))
                    event.outcome = Outcome.PROCESSED
                except UnknownCustomer as exc:
                    # Not ours (another product on the same Stripe account): retrying won't help.
                    event.outcome, event.error = Outcome.IGNORED, str(exc)
            event.processed_at = timezone.now()
            event.save(update_fields=["attempts", "error", "outcome", "processed_at"])
        return True
    except Exception:
        logger.exception("Stripe webhook event %s failed", webhook_event_id)
        WebhookEvent.objects.filter(pk=webhook_event_id).update(
            outcome=Outcome.FAILED, error=traceback.format_exc()[-4000:], attempts=F("attempts") + 1
        )
        return False
