"""Backtest submissions leave one audit row naming who submitted (a user or an API key) in
which organization; refused submissions leave none. Mallory's Globex stays apart."""

from __future__ import annotations

from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import AuditLog
from accounts.services.api_keys import api_key_create
from analytics.models import Backtest
from quantsaas.timeutil import now_ms
from tests.factories import UserFactory, plan_override_with
from tests.mfa import staff_client

SUBMITTED = AuditLog.Action.BACKTEST_SUBMITTED


def _submit(client: APIClient, **changes):
    request = {
        "exchange": "sim",
        "symbol": "BTC-USD",
        "interval": "1m",
        "start": now_ms() - 3_600_000,
        "strategy": "momentum",
        "params": {"lookback": 1},
        **changes,
    }
    return client.post("/api/v1/backtests", request, format="json")


def _backtests_per_day(organization, allowance: int) -> None:
    plan_override_with(
        organization=organization, analytics=allowance > 0, backtests_per_day=allowance
    )


def _submitted(organization) -> list[AuditLog]:
    return list(AuditLog.objects.filter(organization=organization, action=SUBMITTED))


def test_a_session_users_submission_is_audited_once_naming_the_user(alice_client, alice, acme):
    response = _submit(alice_client)

    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    [audit] = _submitted(acme)
    assert audit.actor == alice and audit.actor_api_key is None
    assert audit.details == {
        "backtest_id": job_id,
        "instrument": "sim:BTC-USD",
        "strategy": "momentum",
    }
    assert audit.target == f"backtest {job_id}: momentum on sim:BTC-USD"
    assert audit.ip_address == "127.0.0.1"


def test_an_api_keys_submission_is_audited_once_naming_the_key(acme, alice):
    key = api_key_create(
        organization=acme, created_by=alice, name="research", scopes=["read", "trade-analytics"]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw_key}")

    response = _submit(client, strategy="sma_crossover", params={"fast": 2, "slow": 5})

    assert response.status_code == 202, response.content
    [audit] = _submitted(acme)
    assert audit.actor is None and audit.actor_api_key == key.api_key
    assert audit.details == {
        "backtest_id": response.json()["id"],
        "instrument": "sim:BTC-USD",
        "strategy": "sma_crossover",
    }


def test_a_submission_is_audited_in_the_callers_organization_only(
    alice_client, mallory_client, mallory, acme, globex
):
    response = _submit(mallory_client)

    assert response.status_code == 202, response.content
    [audit] = _submitted(globex)
    assert audit.actor == mallory
    assert audit.details["backtest_id"] == response.json()["id"]
    assert _submitted(acme) == []


def test_a_submission_over_the_daily_allowance_is_not_audited(alice_client, acme):
    _backtests_per_day(acme, 1)

    assert _submit(alice_client).status_code == 202
    refused = _submit(alice_client)

    assert refused.status_code == 403 and refused.json()["error"]["code"] == "plan_required"
    assert len(_submitted(acme)) == 1
    assert Backtest.objects.filter(organization=acme).count() == 1


def test_a_plan_without_backtests_audits_nothing(acme, alice):
    _backtests_per_day(acme, 0)
    key = api_key_create(
        organization=acme, created_by=alice, name="research", scopes=["read", "trade-analytics"]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw_key}")

    refused = _submit(client)

    assert refused.status_code == 403 and refused.json()["error"]["code"] == "plan_required"
    assert _submitted(acme) == []


def test_an_invalid_submission_audits_nothing(alice_client, acme):
    response = _submit(alice_client, strategy="martingale")

    assert response.status_code == 400
    assert _submitted(acme) == []


def test_the_admin_shows_and_filters_backtest_submissions(alice_client, acme):
    _submit(alice_client)
    operator = UserFactory(email="ops@quantsaas.test", is_staff=True, is_superuser=True)
    client = staff_client(operator)  # the admin requires TOTP

    page = client.get(
        reverse("admin:accounts_auditlog_changelist"), {"action__exact": SUBMITTED.value}
    ).content.decode()

    assert '<td class="field-action">Backtest submitted</td>' in page
    assert "momentum on sim:BTC-USD" in page
