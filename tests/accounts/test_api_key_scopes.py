"""API key scopes: read, trade-analytics, admin. New keys read only; a read key can
neither mint nor revoke keys; revoking a key can revoke the keys it created."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.services.api_keys import api_key_create
from tests.conftest import client_for
from tests.factories import plan_grant

KEYS = "/api/v1/keys"


def key_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture
def pro_acme(acme):
    plan_grant(organization=acme, code="pro")
    return acme


def _key(organization, user, *scopes: str):
    return api_key_create(
        organization=organization, created_by=user, name="-".join(scopes), scopes=list(scopes)
    )


def test_a_key_created_on_the_web_page_reads_only(alice, acme):
    client_for(alice, acme).post("/keys/new/", {"name": "notebook"})

    assert ApiKey.objects.get(name="notebook").scopes == ["read"]
    listing = client_for(alice, acme).get("/keys/").content.decode()
    assert '<td data-label="Scopes">read</td>' in listing


def test_a_key_created_over_the_api_reads_only_unless_asked(alice, pro_acme):
    client = client_for(alice, pro_acme)
    default = client.post(KEYS, {"name": "plain"}, format="json").json()
    wide = client.post(
        KEYS, {"name": "ops", "scopes": ["admin", "read", "admin"]}, format="json"
    ).json()

    assert default["scopes"] == ["read"]
    assert wide["scopes"] == ["read", "admin"]
    assert {k["name"]: k["scopes"] for k in client.get(KEYS).json()["data"]} == {
        "plain": ["read"],
        "ops": ["read", "admin"],
    }
    bad = client.post(KEYS, {"name": "x", "scopes": ["superuser"]}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid"
    assert "scopes" in bad.json()["error"]["details"]["fields"]


def test_a_read_key_can_neither_mint_nor_revoke_keys(alice, pro_acme):
    reader = _key(pro_acme, alice, "read")
    victim = _key(pro_acme, alice, "read")
    client = key_client(reader.raw_key)

    minted = client.post(KEYS, {"name": "escalate", "scopes": ["admin"]}, format="json")
    revoked = client.delete(f"{KEYS}/{victim.api_key.pk}")

    for answer in (minted, revoked):
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "permission_denied"
        assert answer.json()["error"]["details"] == {"required_scope": "admin"}
    assert ApiKey.objects.filter(organization=pro_acme).count() == 2
    victim.api_key.refresh_from_db()
    assert victim.api_key.revoked_at is None
    # What it is for, it may do.
    assert client.get("/api/v1/usage").status_code == 200
    assert client.get(KEYS).status_code == 200


def test_backtests_need_the_trade_analytics_scope(alice, pro_acme):
    reader = key_client(_key(pro_acme, alice, "read").raw_key)
    trader = key_client(_key(pro_acme, alice, "read", "trade-analytics").raw_key)

    refused = reader.get("/api/v1/backtests")

    assert refused.status_code == 403
    assert refused.json()["error"]["details"] == {"required_scope": "trade-analytics"}
    assert trader.get("/api/v1/backtests").status_code == 200


def test_a_key_cannot_grant_a_scope_it_lacks(alice, pro_acme):
    admin = key_client(_key(pro_acme, alice, "read", "admin").raw_key)

    escalated = admin.post(KEYS, {"name": "x", "scopes": ["trade-analytics"]}, format="json")
    narrower = admin.post(KEYS, {"name": "y", "scopes": ["read"]}, format="json")

    assert escalated.status_code == 403
    assert escalated.json()["error"]["code"] == "permission_denied"
    assert narrower.status_code == 201


def test_revoking_a_key_can_revoke_the_keys_it_created(alice, pro_acme):
    parent = _key(pro_acme, alice, "read", "admin")
    child = key_client(parent.raw_key).post(
        KEYS, {"name": "child", "scopes": ["read", "admin"]}, format="json"
    )
    grandchild = key_client(child.json()["key"]).post(KEYS, {"name": "grand"}, format="json")
    unrelated = _key(pro_acme, alice, "read")
    assert child.json()["created_by_key"] == parent.api_key.pk
    owner = client_for(alice, pro_acme)

    assert owner.delete(f"{KEYS}/{parent.api_key.pk}?include_created=true").status_code == 204

    statuses = {k["name"]: k["status"] for k in owner.get(KEYS).json()["data"]}
    assert statuses == {
        "read-admin": "revoked",
        "child": "revoked",
        "grand": "revoked",
        "read": "active",
    }
    assert key_client(grandchild.json()["key"]).get("/api/v1/usage").status_code == 401
    assert key_client(unrelated.raw_key).get("/api/v1/usage").status_code == 200


def test_revoking_without_the_flag_leaves_created_keys(alice, pro_acme):
    parent = _key(pro_acme, alice, "read", "admin")
    child = key_client(parent.raw_key).post(KEYS, {"name": "child"}, format="json").json()

    client_for(alice, pro_acme).delete(f"{KEYS}/{parent.api_key.pk}")

    assert key_client(child["key"]).get("/api/v1/usage").status_code == 200


def test_the_schema_documents_each_operations_scope(client, db):
    schema = client.get("/api/v1/schema/?format=json").json()
    paths = schema["paths"]

    assert paths["/api/v1/keys"]["post"]["x-api-key-scope"] == "admin"
    assert paths["/api/v1/keys"]["get"]["x-api-key-scope"] == "read"
    assert paths["/api/v1/keys/{api_key_id}"]["delete"]["x-api-key-scope"] == "admin"
    assert paths["/api/v1/backtests"]["post"]["x-api-key-scope"] == "trade-analytics"
    assert paths["/api/v1/usage"]["get"]["x-api-key-scope"] == "read"
    created = schema["components"]["schemas"]["ApiKeyCreated"]["properties"]
    assert "scopes" in created


def test_the_admin_shows_scopes(admin_client, alice, acme):
    _key(acme, alice, "read")
    page = admin_client.get("/admin/accounts/apikey/").content.decode()
    assert "scopes" in page.lower()


@pytest.mark.django_db(transaction=True)
def test_existing_keys_keep_every_scope_through_the_migration():
    executor = MigrationExecutor(connection)
    executor.migrate([("accounts", "0003_organization_created_by")])
    old_apps = executor.loader.project_state([("accounts", "0003_organization_created_by")]).apps
    Organization = old_apps.get_model("accounts", "Organization")
    OldKey = old_apps.get_model("accounts", "ApiKey")
    organization = Organization.objects.create(name="Legacy", slug="legacy")
    OldKey.objects.create(
        organization=organization, key_hash="a" * 64, prefix="qs_aaaa", last_four="aaaa"
    )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    legacy = ApiKey.objects.get(key_hash="a" * 64)
    assert legacy.scopes == ["read", "trade-analytics", "admin"]
    fresh = ApiKey.objects.create(
        organization_id=legacy.organization_id, key_hash="b" * 64, prefix="qs_b", last_four="b"
    )
    assert fresh.scopes == ["read"]
