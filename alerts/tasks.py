"""Celery tasks: send a firing's deliveries with retries; prune old firings."""

from __future__ import annotations

from datetime import timedelta

from celery import Task, shared_task
from django.utils import timezone

from alerts.delivery import delivery_attempt
from alerts.models import AlertDelivery, AlertFiring

MAX_ATTEMPTS = 8
RETENTION_DAYS = 30


def retry_delay_seconds(attempt: int) -> int:
    """5 s, 10 s, 20 s ... capped at 10 minutes: about 20 minutes of retrying in all."""
    delay: int = min(600, 5 * 2 ** (attempt - 1))
    return delay


@shared_task(bind=True, max_retries=MAX_ATTEMPTS - 1, acks_late=True)
def alert_delivery_send(self: Task[[int], str], delivery_id: int) -> str:
    delivery = (
        AlertDelivery.objects.select_related("firing", "organization")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None or delivery.status in (
        AlertDelivery.Status.DELIVERED,
        AlertDelivery.Status.FAILED,
    ):
        return "gone" if delivery is None else delivery.status  # a redelivered task
    outcome = delivery_attempt(delivery)
    delivery.attempts += 1
    delivery.response_status = outcome.status
    delivery.error = outcome.error
    now = timezone.now()
    if outcome.ok:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", now, None
    elif outcome.retry and delivery.attempts < MAX_ATTEMPTS:
        delay = retry_delay_seconds(delivery.attempts)
        delivery.status = AlertDelivery.Status.RETRYING
        delivery.next_attempt_at = now + timedelta(seconds=delay)
    else:
        delivery.status, delivery.next_attempt_at = AlertDelivery.Status.FAILED, None
    delivery.save(
        update_fields=[
            "attempts",
            "response_status",
            "error",
            "status",
            "delivered_at",
            "next_attempt_at",
        ]
    )
    if delivery.status == AlertDelivery.Status.RETRYING:
        raise self.retry(countdown=retry_delay_seconds(delivery.attempts))
    return delivery.status


@shared_task
def alert_firings_prune() -> int:
    """Firings and their delivery log are kept RETENTION_DAYS."""
    cutoff = timezone.now() - timedelta(days=RETENTION_DAYS)
    deleted, _ = AlertFiring.objects.filter(fired_at__lt=cutoff).delete()
    return deleted
