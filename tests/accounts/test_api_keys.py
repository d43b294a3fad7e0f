"""API keys over the REST API: created once, authenticate programs, revoked and expired refused."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, AuditLog
from accounts.services.api_keys import api_key_create
from billing.models import Plan
from billing.services.overrides import plan_override_grant
from tests.conftest import client_for

KEYS = "/api/v1/keys"


def key_client(raw_key: str, *, header: str = "bearer") -> APIClient:
    client = APIClient()
    if header == "bearer":
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    else:
        client.credentials(HTTP_X_API_KEY=raw_key)
    return client


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


@pytest.fixture
def acme_on_pro(acme):
    """Acme on a plan with room for several keys (the free plan allows one)."""
    plan_override_grant(
        organization=acme, plan=Plan.objects.get(code="pro"), reason="tests", granted_by=None
    )
    return acme


@pytest.fixture
def acme_key(acme, alice):
    # An admin-scoped key: the tests below rotate keys with it.
    return api_key_create(
        organization=acme, created_by=alice, name="research", scopes=["read", "admin"]
    )


def test_created_key_is_shown_once_and_a_later_list_does_not_contain_it(alice_client):
    created = alice_client.post(KEYS, {"name": "backtester"}, format="json")

    assert created.status_code == 201
    body = created.json()
    raw_key = body["key"]
    assert raw_key.startswith("qs_")
    assert len(raw_key) >= 3 + 43  # 32 random bytes, url-safe base64
    assert body["name"] == "backtester"
    assert body["status"] == "active"
    assert body["last_four"] == raw_key[-4:]
    assert body["created_by"] == "alice@acme.test"
    assert isinstance(body["created_at"], int)
    assert "no-store" in created["Cache-Control"]

    listed = alice_client.get(KEYS)
    assert listed.status_code == 200
    assert listed.json()["next"] is None
    [entry] = listed.json()["data"]
    assert entry["id"] == body["id"]
    assert "key" not in entry and "key_hash" not in entry
    assert raw_key not in listed.content.decode()
    assert raw_key[-4:] in entry["masked"]


def test_list_shows_the_fields_a_customer_needs_and_never_the_hash(alice_client, acme_key):
    [entry] = alice_client.get(KEYS).json()["data"]

    assert set(entry) == {
        "id",
        "name",
        "prefix",
        "scopes",
        "created_by_key",
        "last_four",
        "masked",
        "status",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
        "created_by",
    }
    assert acme_key.api_key.key_hash not in alice_client.get(KEYS).content.decode()
    assert entry["created_at"] == int(acme_key.api_key.created_at.timestamp() * 1000)


@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
def test_key_authenticates_a_program_for_its_organization(header, acme_key, globex, mallory):
    api_key_create(organization=globex, created_by=mallory, name="globex's own")

    response = key_client(acme_key.raw_key, header=header).get(KEYS)

    assert response.status_code == 200
    assert [k["name"] for k in response.json()["data"]] == ["research"]


def test_a_wrong_key_is_refused_with_the_error_shape(db):
    wrong = "qs_" + "A" * 43

    response = key_client(wrong).get(KEYS)

    error = assert_error(response, 401, "authentication_failed")
    assert "Bearer" in response["WWW-Authenticate"]
    assert error["details"] == {}


def test_a_token_without_the_qs_prefix_is_refused(db):
    response = key_client("sk_live_" + "b" * 40).get(KEYS)

    error = assert_error(response, 401, "authentication_failed")
    assert "qs_" in error["message"]


def test_a_revoked_key_is_refused(alice_client, acme_key):
    assert key_client(acme_key.raw_key).get(KEYS).status_code == 200

    revoked = alice_client.delete(f"{KEYS}/{acme_key.api_key.pk}")

    assert revoked.status_code == 204
    error = assert_error(key_client(acme_key.raw_key).get(KEYS), 401, "authentication_failed")
    assert "revoked" in error["message"]
    [entry] = alice_client.get(KEYS).json()["data"]
    assert entry["status"] == "revoked"
    assert isinstance(entry["revoked_at"], int)


def test_an_expired_key_is_refused(acme, alice, monkeypatch):
    created = api_key_create(
        organization=acme, created_by=alice, expires_at=timezone.now() + timedelta(hours=1)
    )
    assert key_client(created.raw_key).get(KEYS).status_code == 200
    # The hour passes (the key is cached by now: expiry must still apply).
    later = timezone.now() + timedelta(hours=1, seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)

    error = assert_error(key_client(created.raw_key).get(KEYS), 401, "authentication_failed")
    assert "expired" in error["message"]


def test_unauthenticated_requests_get_401(db):
    assert_error(APIClient().get(KEYS), 401, "authentication_failed")


def test_last_used_is_recorded_but_not_rewritten_within_a_minute(acme_key, monkeypatch):
    api_key = acme_key.api_key
    assert api_key.last_used_at is None
    client = key_client(acme_key.raw_key)

    client.get(KEYS)
    api_key.refresh_from_db()
    first_use = api_key.last_used_at
    assert first_use is not None

    client.get(KEYS)
    api_key.refresh_from_db()
    assert api_key.last_used_at == first_use

    # Two minutes later the next request records the new time.
    later = timezone.now() + timedelta(minutes=2)
    monkeypatch.setattr(timezone, "now", lambda: later)
    client.get(KEYS)
    api_key.refresh_from_db()
    assert api_key.last_used_at == later


def test_only_the_sha256_of_the_key_is_stored(alice_client):
    raw_key = alice_client.post(KEYS, {}, format="json").json()["key"]

    row = ApiKey.objects.values().get()
    assert row["key_hash"] == hashlib.sha256(raw_key.encode()).hexdigest()
    assert all(raw_key not in str(value) for value in row.values())


def test_expiry_accepts_milliseconds_and_iso_8601(alice_client, acme_on_pro):
    in_a_week = timezone.now().replace(microsecond=0) + timedelta(days=7)
    as_ms = int(in_a_week.timestamp() * 1000)

    by_ms = alice_client.post(KEYS, {"expires_at": as_ms}, format="json")
    by_iso = alice_client.post(
        KEYS, {"expires_at": in_a_week.astimezone(UTC).isoformat()}, format="json"
    )

    assert by_ms.status_code == 201 and by_iso.status_code == 201
    assert by_ms.json()["expires_at"] == as_ms
    assert by_iso.json()["expires_at"] == as_ms


@pytest.mark.parametrize(
    "expires_at",
    [
        int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000),
        "2020-01-01T00:00:00Z",
        "next tuesday",
        True,
    ],
)
def test_expiry_must_be_a_time_in_the_future(alice_client, expires_at):
    response = alice_client.post(KEYS, {"expires_at": expires_at}, format="json")

    error = assert_error(response, 400, "invalid")
    assert set(error["details"]["fields"]) == {"expires_at"}
    assert not ApiKey.objects.exists()


def test_a_member_may_list_but_not_create_or_revoke(acme, carol, acme_key):
    client = client_for(carol, acme)

    assert client.get(KEYS).status_code == 200
    assert_error(client.post(KEYS, {"name": "x"}, format="json"), 403, "permission_denied")
    assert_error(client.delete(f"{KEYS}/{acme_key.api_key.pk}"), 403, "permission_denied")

    assert ApiKey.objects.count() == 1
    acme_key.api_key.refresh_from_db()
    assert acme_key.api_key.revoked_at is None


def test_an_admin_may_create_and_revoke(acme, bob):
    client = client_for(bob, acme)

    created = client.post(KEYS, {"name": "bob's"}, format="json")
    assert created.status_code == 201
    assert client.delete(f"{KEYS}/{created.json()['id']}").status_code == 204


def test_another_organization_cannot_see_or_revoke_the_key(mallory_client, acme_key):
    assert mallory_client.get(KEYS).json()["data"] == []

    response = mallory_client.delete(f"{KEYS}/{acme_key.api_key.pk}")

    assert_error(response, 404, "not_found")
    acme_key.api_key.refresh_from_db()
    assert acme_key.api_key.revoked_at is None
    assert not AuditLog.objects.filter(action=AuditLog.Action.KEY_REVOKED).exists()


def test_revoking_twice_succeeds_and_is_audited_once(alice_client, acme_key):
    url = f"{KEYS}/{acme_key.api_key.pk}"

    assert alice_client.delete(url).status_code == 204
    assert alice_client.delete(url).status_code == 204

    assert AuditLog.objects.filter(action=AuditLog.Action.KEY_REVOKED).count() == 1


def test_creating_and_revoking_write_audit_rows(alice_client, acme, alice):
    created = alice_client.post(KEYS, {"name": "ops"}, format="json").json()
    alice_client.delete(f"{KEYS}/{created['id']}")

    rows = AuditLog.objects.filter(organization=acme, action__startswith="api_key.")
    by_action = {row.action: row for row in rows}
    assert set(by_action) == {AuditLog.Action.KEY_CREATED, AuditLog.Action.KEY_REVOKED}
    for row in by_action.values():
        assert row.actor == alice
        assert row.target == created["masked"]
        assert row.details["api_key_id"] == created["id"]
        assert row.ip_address == "127.0.0.1"


def test_a_key_can_rotate_keys_and_the_audit_names_the_key(acme_on_pro, acme_key):
    client = key_client(acme_key.raw_key)

    created = client.post(KEYS, {"name": "rotated"}, format="json")
    assert created.status_code == 201
    assert client.delete(f"{KEYS}/{acme_key.api_key.pk}").status_code == 204

    revoked = AuditLog.objects.get(action=AuditLog.Action.KEY_REVOKED)
    assert revoked.actor is None
    assert revoked.actor_api_key == acme_key.api_key
    assert created.json()["created_by"] is None


def test_a_key_beyond_the_plans_allowance_is_refused_with_the_plans_that_allow_it(
    alice_client, acme_key
):
    response = alice_client.post(KEYS, {"name": "second"}, format="json")

    error = assert_error(response, 403, "plan_required")
    assert "pro" in error["details"]["plans"]
    assert ApiKey.objects.count() == 1


def test_a_revoked_key_frees_its_place_in_the_allowance(alice_client, acme_key):
    alice_client.delete(f"{KEYS}/{acme_key.api_key.pk}")

    assert alice_client.post(KEYS, {"name": "replacement"}, format="json").status_code == 201
