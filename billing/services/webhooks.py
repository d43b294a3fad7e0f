"""Receiving Stripe webhooks, the dj-stripe way.

1. Store the raw delivery before anything else, so nothing Stripe sent is lost.
2. Verify the signature with OUR configured secret (never one the request names).
3. Deduplicate on Stripe's event id; only verified events may claim an id.
4. Process inside a transaction: treat the event as "something changed" and
   re-read the subscription from Stripe, then record the outcome.
Unhandled types are acknowledged (2xx) and recorded as ignored.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass

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


def _stripe_id(value: object) -> str | None:
    """An id field that may be a plain id or an expanded object."""
    if isinstance(value, dict):
        return value.get("id")
    return value or None  # type: ignore[return-value]


def _invoice_subscription_id(invoice: dict) -> str | None:
    # API 2025-03-31 moved it under parent.subscription_details; older versions had it on top.
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return _stripe_id(details.get("subscription")) or _stripe_id(invoice.get("subscription"))


def _on_checkout_completed(obj: dict) -> None:
    if obj.get("mode") == "subscription" and obj.get("subscription"):
        subscription_sync(stripe_subscription_id=_stripe_id(obj["subscription"]))


def _on_subscription_changed(obj: dict) -> None:
    subscription_sync(stripe_subscription_id=obj["id"])


def _on_invoice_paid(obj: dict) -> None:
    subscription_id = _invoice_subscription_id(obj)
    if subscription_id:
        subscription_sync(stripe_subscription_id=subscription_id)


def _on_invoice_payment_failed(obj: dict) -> None:
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


HANDLERS: dict[str, Callable[[dict], None]] = {
    "checkout.session.completed": _on_checkout_completed,
    "customer.subscription.created": _on_subscription_changed,
    "customer.subscription.updated": _on_subscription_changed,
    "customer.subscription.deleted": _on_subscription_changed,
    "invoice.paid": _on_invoice_paid,
    "invoice.payment_failed": _on_invoice_payment_failed,
}


def webhook_receive(*, raw_body: bytes, signature: str | None) -> WebhookAnswer:
    """Store, verify, deduplicate and process one delivery; the answer for Stripe."""
    row = WebhookEvent.objects.create(raw_body=raw_body.decode("utf-8", errors="replace"))
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        row.outcome, row.error = Outcome.FAILED, "STRIPE_WEBHOOK_SECRET is not configured."
        row.save(update_fields=["outcome", "error"])
        return WebhookAnswer(503, "Webhooks are not configured on this server.")
    try:
        stripe.Webhook.construct_event(raw_body, signature or "", secret)
        payload = json.loads(raw_body)
        event_id, event_type = payload["id"], payload["type"]
    except (ValueError, KeyError, TypeError, stripe.SignatureVerificationError) as exc:
        row.outcome, row.error = Outcome.INVALID_SIGNATURE, str(exc)[:500]
        row.save(update_fields=["outcome", "error"])
        return WebhookAnswer(400, "Invalid signature or payload.")

    try:
        with transaction.atomic():
            WebhookEvent.objects.filter(pk=row.pk).update(
                stripe_event_id=event_id, type=event_type, payload=payload
            )
    except IntegrityError:
        original = WebhookEvent.objects.get(stripe_event_id=event_id)
        row.type, row.outcome = event_type, Outcome.DUPLICATE
        row.error, row.processed_at = f"Duplicate delivery of #{original.pk}.", timezone.now()
        row.save(update_fields=["type", "outcome", "error", "processed_at"])
        if original.outcome in DONE:
            return WebhookAnswer(200, "Duplicate; already processed.")
        row = original  # the earlier delivery failed or is in flight: (re)try it under its lock
    if webhook_event_process(webhook_event_id=row.pk):
        return WebhookAnswer(200, "Processed.")
    return WebhookAnswer(500, "Processing failed; Stripe will retry.")


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
                        handler(event.payload["data"]["object"])
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
