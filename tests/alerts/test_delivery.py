"""Delivering a firing: a signed webhook retried with backoff, and an email; both logged."""

from __future__ import annotations

import json

import pytest
from celery.exceptions import Retry
from django.core import mail

from alerts.models import AlertDelivery, AlertRule
from alerts.services import alert_firings_record, alert_webhook_secret_ensure
from alerts.signing import signature_verify
from alerts.tasks import MAX_ATTEMPTS, alert_delivery_send, retry_delay_seconds
from marketdata.models import Instrument
from tests.alerts.conftest import receiving

pytestmark = pytest.mark.django_db


def _send_as_the_worker_would(delivery_id: int) -> None:
    """Run the task, and again for each retry it asks for (the worker would, later)."""
    for _ in range(MAX_ATTEMPTS + 1):
        try:
            alert_delivery_send.apply(args=[delivery_id])
        except Retry:
            continue
        return


def _fire(acme, *, webhook_url: str = "", email: str = "") -> list[int]:
    rule = AlertRule.objects.create(
        organization=acme,
        name="BTC through 70k",
        kind="price",
        exchange_id="sim",
        instrument=Instrument.objects.get(exchange_id="sim", symbol="BTC-USD"),
        direction="above",
        threshold=70_000,
        webhook_url=webhook_url,
        email=email,
    )
    record = {
        "id": "evt-1",
        "rule_id": rule.pk,
        "rule_name": rule.name,
        "organization_id": acme.pk,
        "kind": "price",
        "value": 70_000.5,
        "tick_ts": 1_764_000_000_000,
        "fired_ts": 1_764_000_000_004,
        "message": "sim BTC-USD price crossed above 70000",
    }
    return alert_firings_record(records=[record])


def test_the_webhook_carries_a_signature_the_receiver_verifies(acme, receiver):
    (delivery_id,) = _fire(acme, webhook_url=receiver.url)

    alert_delivery_send.apply(args=[delivery_id])

    (request,) = receiver.requests
    secret = alert_webhook_secret_ensure(organization=acme)
    header = request["headers"]["QuantSaaS-Signature"]
    assert signature_verify(secret=secret, header=header, body=request["body"])
    assert not signature_verify(secret="whsec_other", header=header, body=request["body"])
    assert not signature_verify(secret=secret, header=header, body=request["body"] + b" ")
    assert json.loads(request["body"])["id"] == "evt-1"
    assert request["headers"]["QuantSaaS-Event-Id"] == "evt-1"
    delivery = AlertDelivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("delivered", 1, 200)


def test_a_failing_receiver_is_retried_and_each_attempt_is_logged(acme):
    with receiving([500, 503]) as receiver:
        (delivery_id,) = _fire(acme, webhook_url=receiver.url)

        _send_as_the_worker_would(delivery_id)

        assert len(receiver.requests) == 3
    delivery = AlertDelivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.attempts) == ("delivered", 3)


def test_a_receiver_that_never_succeeds_is_given_up_on_after_the_last_attempt(acme):
    with receiving([500] * 20) as receiver:
        (delivery_id,) = _fire(acme, webhook_url=receiver.url)

        _send_as_the_worker_would(delivery_id)

        assert len(receiver.requests) == MAX_ATTEMPTS
    delivery = AlertDelivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.response_status, delivery.error) == (
        "failed",
        500,
        "HTTP 500",
    )


def test_backoff_doubles_up_to_ten_minutes():
    assert [retry_delay_seconds(n) for n in (1, 2, 3, 8, 20)] == [5, 10, 20, 600, 600]


def test_the_email_names_the_rule_and_what_happened(acme):
    (delivery_id,) = _fire(acme, email="desk@acme.test")

    alert_delivery_send.apply(args=[delivery_id])

    (message,) = mail.outbox
    assert message.to == ["desk@acme.test"] and "BTC through 70k" in message.subject
    assert "crossed above 70000" in message.body and "evt-1" in message.body
    assert AlertDelivery.objects.get(pk=delivery_id).status == "delivered"


def test_a_delivered_delivery_is_not_sent_twice(acme, receiver):
    (delivery_id,) = _fire(acme, webhook_url=receiver.url)

    alert_delivery_send.apply(args=[delivery_id])
    alert_delivery_send.apply(args=[delivery_id])  # a redelivered task message

    assert len(receiver.requests) == 1
