"""`/api/v1/alerts`: rules under the plan's limit, audited, visible to their organization only."""

from __future__ import annotations

import pytest
from django.test import override_settings

from accounts.models import AuditLog
from accounts.services.api_keys import api_key_create
from alerts.models import AlertRule
from alerts.services import alert_firings_record
from tests.alerts.conftest import price_rule
from tests.conftest import client_for
from tests.factories import plan_grant

pytestmark = pytest.mark.django_db


def _create(client, **fields):
    return client.post("/api/v1/alerts", price_rule(**fields), format="json")


def test_an_owner_creates_lists_changes_and_deletes_a_rule_each_audited(alice_client, acme):
    created = _create(alice_client)
    assert created.status_code == 201, created.content
    rule = created.json()
    assert rule["symbol"] == "BTC-USD" and rule["threshold"] == 70_000
    assert rule["cooldown_seconds"] == 60 and rule["enabled"] is True

    listed = alice_client.get("/api/v1/alerts").json()
    assert [r["id"] for r in listed["data"]] == [rule["id"]] and listed["next"] is None

    changed = alice_client.patch(
        f"/api/v1/alerts/{rule['id']}", {"threshold": 71_000, "enabled": False}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["threshold"] == 71_000 and changed.json()["enabled"] is False
    assert changed.json()["symbol"] == "BTC-USD"  # untouched fields stay

    assert alice_client.delete(f"/api/v1/alerts/{rule['id']}").status_code == 204
    assert alice_client.get(f"/api/v1/alerts/{rule['id']}").status_code == 404
    actions = list(
        AuditLog.objects.filter(organization=acme)
        .order_by("created_at")
        .values_list("action", flat=True)
    )
    assert actions[-3:] == ["alert_rule.created", "alert_rule.changed", "alert_rule.deleted"]
    change = AuditLog.objects.get(organization=acme, action="alert_rule.changed")
    assert change.details["changed"]["threshold"] == [70_000, 71_000]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"symbol": "NOPE-USD"}, "symbol"),
        ({"exchange": "nowhere"}, "exchange"),
        ({"direction": "sideways"}, "direction"),
        ({"threshold": "lots"}, "threshold"),
        ({"threshold": -5}, "threshold"),
        ({"kind": "percent_move", "threshold": 2}, "window_seconds"),
        ({"kind": "percent_move", "threshold": 2, "window_seconds": 999_999}, "window_seconds"),
        ({"kind": "weather"}, "kind"),
        ({"webhook_url": "not a url"}, "webhook_url"),
        ({"email": "nobody"}, "email"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field(alice_client, fields, field):
    response = _create(alice_client, **fields)

    assert response.status_code == 400, response.content
    body = response.json()["error"]
    assert body["code"] == "invalid" and field in body["details"]["fields"]
    assert AlertRule.objects.count() == 0


def test_feed_down_needs_no_symbol_and_defaults_to_thirty_seconds(alice_client):
    response = alice_client.post(
        "/api/v1/alerts", {"kind": "feed_down", "exchange": "sim"}, format="json"
    )

    assert response.status_code == 201, response.content
    assert response.json()["window_seconds"] == 30 and response.json()["symbol"] is None


@override_settings(ALERTS_WEBHOOK_ALLOW_PRIVATE=False)
@pytest.mark.parametrize(
    "url", ["http://hooks.example.com/x", "https://127.0.0.1/x", "https://10.0.0.8/x"]
)
def test_webhooks_must_be_https_to_a_public_address(alice_client, url):
    response = _create(alice_client, webhook_url=url)

    assert response.status_code == 400
    assert "webhook_url" in response.json()["error"]["details"]["fields"]


def test_the_free_plan_keeps_three_rules_and_names_the_plans_with_more(alice_client):
    for level in (1, 2, 3):
        assert _create(alice_client, threshold=level).status_code == 201

    response = _create(alice_client, threshold=4)

    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "plan_required" and error["details"]["plans"] == ["pro", "enterprise"]
    assert AlertRule.objects.count() == 3


def test_a_paid_plan_allows_more_rules(alice_client, acme):
    plan_grant(organization=acme, code="pro")
    for level in range(1, 6):
        assert _create(alice_client, threshold=level).status_code == 201


def test_a_member_reads_rules_but_cannot_change_them(alice_client, carol, acme):
    rule_id = _create(alice_client).json()["id"]
    client = client_for(carol, acme)

    assert client.get("/api/v1/alerts").status_code == 200
    assert _create(client).status_code == 403
    assert client.delete(f"/api/v1/alerts/{rule_id}").status_code == 403
    assert client.get("/api/v1/alerts/webhook-secret").status_code == 403


def test_api_key_scopes_read_and_write_rules(alice, acme, api_client):
    plan_grant(organization=acme)  # two keys
    reader = api_key_create(organization=acme, created_by=alice, name="r").raw_key
    writer = api_key_create(
        organization=acme, created_by=alice, name="w", scopes=["read", "trade-analytics"]
    ).raw_key

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {reader}")
    assert api_client.get("/api/v1/alerts").status_code == 200
    assert _create(api_client).status_code == 403
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {writer}")
    assert _create(api_client).status_code == 201
    assert api_client.get("/api/v1/alerts/webhook-secret").status_code == 403  # needs admin


def test_another_organization_gets_404_and_changes_nothing(alice_client, mallory_client):
    rule_id = _create(alice_client).json()["id"]
    before = list(AlertRule.objects.values())

    assert mallory_client.get(f"/api/v1/alerts/{rule_id}").status_code == 404
    patch = mallory_client.patch(f"/api/v1/alerts/{rule_id}", {"enabled": False}, format="json")
    assert patch.status_code == 404 and patch.json()["error"]["code"] == "not_found"
    assert mallory_client.delete(f"/api/v1/alerts/{rule_id}").status_code == 404
    assert mallory_client.get("/api/v1/alerts").json()["data"] == []
    assert mallory_client.get(f"/api/v1/alerts/deliveries?rule={rule_id}").json()["data"] == []
    assert list(AlertRule.objects.values()) == before


def test_the_webhook_secret_is_stable_until_rotated_and_rotation_is_audited(alice_client, acme):
    first = alice_client.get("/api/v1/alerts/webhook-secret").json()["secret"]
    again = alice_client.get("/api/v1/alerts/webhook-secret").json()["secret"]
    rotated = alice_client.post("/api/v1/alerts/webhook-secret").json()["secret"]

    assert first.startswith("whsec_") and first == again and rotated != first
    assert AuditLog.objects.filter(
        organization=acme, action="alert_webhook_secret.rotated"
    ).exists()


def test_the_delivery_log_lists_each_channel_of_a_firing(alice_client, acme, globex):
    rule = AlertRule.objects.get(
        pk=_create(alice_client, email="desk@acme.test", webhook_url="http://127.0.0.1:9/x").json()[
            "id"
        ]
    )
    alert_firings_record(
        records=[
            {
                "id": "e1",
                "rule_id": rule.pk,
                "organization_id": acme.pk,
                "tick_ts": 1_764_000_000_000,
                "fired_ts": 1_764_000_000_010,
                "message": "sim BTC-USD price crossed above 70000",
            }
        ]
    )

    log = alice_client.get("/api/v1/alerts/deliveries").json()["data"]

    assert sorted(d["channel"] for d in log) == ["email", "webhook"]
    assert {d["event_id"] for d in log} == {"e1"} and {d["status"] for d in log} == {"pending"}
    rule.refresh_from_db()
    assert rule.last_fired_at is not None
