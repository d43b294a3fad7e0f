"""Celery tasks for billing. They take ids, never model instances, and call services."""

from __future__ import annotations

import logging

from celery import shared_task

from billing.models import StripeCustomer
from billing.services.subscriptions import customer_reconcile, subscription_sync
from billing.services.webhooks import webhook_event_process, webhook_events_prune
from billing.stripe_client import stripe_configured
from billing.usage import usage_rollup as usage_rollup_run

logger = logging.getLogger(__name__)


@shared_task
def subscriptions_reconcile() -> int:
    """Fan out one reconcile per Stripe customer, so a missed webhook heals within the hour."""
    if not stripe_configured():
        return 0
    customer_ids = list(StripeCustomer.objects.values_list("stripe_customer_id", flat=True))
    for stripe_customer_id in customer_ids:
        customer_reconcile_task.delay(stripe_customer_id)
    return len(customer_ids)


@shared_task(autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def customer_reconcile_task(stripe_customer_id: str) -> int:
    return len(customer_reconcile(stripe_customer_id=stripe_customer_id))


@shared_task(autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def subscription_sync_task(stripe_subscription_id: str) -> None:
    subscription_sync(stripe_subscription_id=stripe_subscription_id)


@shared_task
def webhook_event_reprocess(webhook_event_id: int) -> bool:
    return webhook_event_process(webhook_event_id=webhook_event_id, force=True)


@shared_task
def usage_rollup() -> int:
    return usage_rollup_run()


@shared_task
def webhook_events_prune_task() -> int:
    """Daily (beat): Stripe deliveries past their retention are deleted."""
    return webhook_events_prune()
