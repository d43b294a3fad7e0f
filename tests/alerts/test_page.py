"""The alerts page: managers create, disable and delete rules; members only look."""

from __future__ import annotations

import pytest

from alerts.models import AlertRule
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def _form(**fields) -> dict:
    return {
        "name": "ETH dip",
        "kind": "price",
        "exchange": "sim",
        "symbol": "ETH-USD",
        "direction": "below",
        "threshold": "2500",
        "cooldown_seconds": "300",
        "email": "desk@acme.test",
        **fields,
    }


def test_an_owner_creates_toggles_and_deletes_a_rule_from_the_page(alice, acme):
    client = client_for(alice, acme)

    page = client.get("/alerts/")
    assert page.status_code == 200 and b"Webhook signing secret" in page.content
    assert client.post("/alerts/new/", _form()).status_code == 302
    rule = AlertRule.objects.get(organization=acme)
    assert (rule.direction, rule.threshold, rule.cooldown_seconds) == ("below", 2500, 300)
    assert b"ETH dip" in client.get("/alerts/").content

    client.post(f"/alerts/{rule.pk}/toggle/")
    rule.refresh_from_db()
    assert rule.enabled is False
    client.post(f"/alerts/{rule.pk}/delete/")
    assert not AlertRule.objects.filter(pk=rule.pk).exists()


def test_a_bad_rule_is_shown_again_with_the_reason(alice, acme):
    response = client_for(alice, acme).post("/alerts/new/", _form(symbol="NOPE-USD"))

    assert response.status_code == 400
    assert b"No such instrument" in response.content
    assert not AlertRule.objects.exists()


def test_a_member_sees_rules_but_neither_the_form_nor_the_secret(alice, carol, acme):
    client = client_for(carol, acme)

    page = client.get("/alerts/")

    assert page.status_code == 200
    assert b"Webhook signing secret" not in page.content and b"alert-rule-form" not in page.content
    assert client.post("/alerts/new/", _form()).status_code == 403


def test_the_navigation_links_to_alerts(alice, acme):
    assert b'href="/alerts/"' in client_for(alice, acme).get("/dashboard/").content
