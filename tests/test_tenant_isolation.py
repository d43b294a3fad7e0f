"""Another organization gets 404 on every tenant-owned endpoint and changes nothing.

Mallory owns Globex and is signed in (or holds a Globex API key). She aims every
request that takes an object id at Acme's objects. Each must answer 404, exactly
as for an id that does not exist, and Acme's data must be unchanged afterwards.

To cover a new endpoint, add a row to API_CASES or PAGE_CASES (the path is built
from the `AcmeObjects` below; add an object there if the endpoint needs a new
kind) and, if it owns new data, extend `acme_state`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, AuditLog, Invitation, Membership, Organization, Role, User
from accounts.services.api_keys import api_key_create
from alerts.models import AlertRule
from analytics.models import Backtest
from tests.conftest import client_for


@dataclass(frozen=True)
class AcmeObjects:
    organization: Organization
    api_key: ApiKey
    admin_membership: Membership
    member_membership: Membership
    invitation: Invitation
    backtest: Backtest
    alert_rule: AlertRule


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: Callable[[AcmeObjects], str]
    data: Callable[[AcmeObjects], dict] = lambda acme: {}

    def __str__(self) -> str:
        return self.name


ID_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")

# --- the tables: one row per tenant-owned endpoint that takes an object id --------------

API_CASES = [
    Case("revoke key", "delete", lambda o: f"/api/v1/keys/{o.api_key.pk}"),
    Case("backtest detail", "get", lambda o: f"/api/v1/backtests/{o.backtest.pk}"),
    Case("alert rule detail", "get", lambda o: f"/api/v1/alerts/{o.alert_rule.pk}"),
    Case(
        "alert rule change",
        "patch",
        lambda o: f"/api/v1/alerts/{o.alert_rule.pk}",
        lambda o: {"enabled": False},
    ),
    Case("alert rule delete", "delete", lambda o: f"/api/v1/alerts/{o.alert_rule.pk}"),
]

PAGE_CASES = [
    Case("alert toggle", "post", lambda o: reverse("alert_toggle", args=[o.alert_rule.pk])),
    Case("alert delete", "post", lambda o: reverse("alert_delete", args=[o.alert_rule.pk])),
    Case("key revoke confirm", "get", lambda o: reverse("api_key_revoke", args=[o.api_key.pk])),
    Case("key revoke", "post", lambda o: reverse("api_key_revoke", args=[o.api_key.pk])),
    Case(
        "invitation revoke",
        "post",
        lambda o: reverse("invitation_revoke", args=[o.invitation.pk]),
    ),
    Case(
        "member role change",
        "post",
        lambda o: reverse("membership_role", args=[o.admin_membership.pk]),
        lambda o: {"role": Role.OWNER},
    ),
    Case(
        "member role change of a member",
        "post",
        lambda o: reverse("membership_role", args=[o.member_membership.pk]),
        lambda o: {"role": Role.ADMIN},
    ),
    Case(
        "member remove",
        "post",
        lambda o: reverse("membership_remove", args=[o.admin_membership.pk]),
    ),
    Case(
        "switch into the organization",
        "post",
        lambda o: reverse("organization_switch"),
        lambda o: {"organization": o.organization.pk, "organization_id": o.organization.pk},
    ),
]


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def acme_objects(acme, alice, bob, carol) -> AcmeObjects:
    return AcmeObjects(
        organization=acme,
        api_key=api_key_create(organization=acme, created_by=alice, name="acme prod").api_key,
        admin_membership=Membership.objects.get(organization=acme, user=bob),
        member_membership=Membership.objects.get(organization=acme, user=carol),
        invitation=Invitation.objects.create(
            organization=acme,
            email="dave@acme.test",
            role=Role.MEMBER,
            invited_by=alice,
            expires_at=timezone.now() + timedelta(days=7),
        ),
        backtest=Backtest.objects.create(organization=acme, created_by=alice, strategy="momentum"),
        alert_rule=AlertRule.objects.create(
            organization=acme, kind="feed_down", exchange_id="sim", window_seconds=30
        ),
    )


def acme_state(organization: Organization) -> dict:
    """Everything of Acme's that a request from outside might try to change."""
    return {
        "keys": list(
            ApiKey.objects.filter(organization=organization)
            .order_by("pk")
            .values("pk", "name", "revoked_at", "expires_at", "key_hash")
        ),
        "members": list(
            Membership.objects.filter(organization=organization)
            .order_by("pk")
            .values("pk", "user_id", "role")
        ),
        "invitations": list(
            Invitation.objects.filter(organization=organization)
            .order_by("pk")
            .values("pk", "email", "role", "revoked_at", "accepted_at", "expires_at")
        ),
        "organization": list(
            Organization.objects.filter(pk=organization.pk).values("name", "slug", "is_personal")
        ),
        "audit_rows": AuditLog.objects.filter(organization=organization).count(),
        "alert_rules": list(
            AlertRule.objects.filter(organization=organization).order_by("pk").values()
        ),
    }


def _send(client, case: Case, objects: AcmeObjects, **extra):
    method = getattr(client, case.method)
    data = case.data(objects)
    if isinstance(client, APIClient):
        return method(case.path(objects), data or None, format="json", **extra)
    return method(case.path(objects), data, **extra)


def _mallory_key_client(mallory: User, globex: Organization) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {_globex_key(mallory, globex)}")
    return client


def _globex_key(mallory: User, globex: Organization) -> str:
    # Every scope: isolation must hold for the most powerful key, not only a reader.
    return api_key_create(
        organization=globex,
        created_by=mallory,
        name="mallory",
        scopes=["read", "trade-analytics", "admin"],
    ).raw_key


# --- the walk ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", API_CASES, ids=str)
@pytest.mark.parametrize("auth", ["session", "api_key"])
def test_api_answers_404_to_another_organization_and_changes_nothing(
    case, auth, acme_objects, mallory, globex
):
    client = (
        client_for(mallory, globex) if auth == "session" else _mallory_key_client(mallory, globex)
    )
    before = acme_state(acme_objects.organization)

    response = _send(client, case, acme_objects)

    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "not_found"
    assert acme_state(acme_objects.organization) == before


@pytest.mark.parametrize("case", PAGE_CASES, ids=str)
def test_page_answers_404_to_another_organization_and_changes_nothing(
    case, acme_objects, mallory, globex
):
    client = Client()
    client.force_login(mallory)
    session = client.session
    session["organization_id"] = globex.pk
    session.save()
    before = acme_state(acme_objects.organization)

    response = _send(client, case, acme_objects)

    assert response.status_code == 404, response.content[:500]
    assert acme_state(acme_objects.organization) == before


def test_a_forged_session_organization_does_not_reach_another_tenant(acme_objects, mallory, globex):
    """Pointing the session at Acme's id is ignored: the membership is checked every time."""
    client = client_for(mallory, acme_objects.organization)

    listed = client.get("/api/v1/keys")
    revoke = client.delete(f"/api/v1/keys/{acme_objects.api_key.pk}")

    assert listed.status_code == 200
    assert [k["name"] for k in listed.json()["data"]] == []
    assert revoke.status_code == 404
    acme_objects.api_key.refresh_from_db()
    assert acme_objects.api_key.revoked_at is None


def test_every_id_taking_route_is_in_the_tables():
    """A new route taking an object id fails here until it is added to a table above.

    Path parameters named `id`, `pk` or `*_id` identify objects; market data
    parameters (exchange, symbol) are global, not tenant-owned.
    """
    covered = {"api-key-detail", "api_key_revoke", "invitation_revoke", "backtest-detail"}
    covered |= {"membership_role", "membership_remove"}
    covered |= {"alert-rule-detail", "alert_toggle", "alert_delete"}
    # The operators' admin and allauth's own account pages are not tenant-scoped.
    foreign_prefixes = ("admin/", "accounts/")

    found: set[str] = set()

    def walk(patterns, prefix: str = "") -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if route.startswith(foreign_prefixes):
                continue
            if hasattr(pattern, "url_patterns"):
                walk(pattern.url_patterns, route)
                continue
            params = ID_PARAMETER.findall(route)
            if any(name in {"id", "pk"} or name.endswith("_id") for name in params):
                found.add(pattern.name or route)

    walk(get_resolver().url_patterns)
    assert found, "the walk found no id-taking routes at all; is it still looking?"
    assert found <= covered, f"add these to API_CASES or PAGE_CASES: {sorted(found - covered)}"
