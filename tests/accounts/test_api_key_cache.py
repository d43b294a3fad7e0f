"""Cached API keys: no query per request, yet a revoked, deleted or edited key stops at once.

Keys are looked up by hash in the shared cache, with a short copy in each process
(accounts.api_key_cache). Every test first uses the key, so the next request is the one
that would be answered from the cache. A change made in this process applies to the very
next request; one made in another process within the local copy's lifetime.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

import quantsaas.cache
from accounts import api_key_cache
from accounts.models import ApiKey, Organization
from accounts.services.api_keys import api_key_create, api_key_revoke
from tests.conftest import client_for

KEYS = "/api/v1/keys"
INSTRUMENTS = "/api/v1/instruments?exchange=sim"


def key_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def refused(response) -> str:
    assert response.status_code == 401, response.content
    error = response.json()["error"]
    assert error["code"] == "authentication_failed"
    return error["message"]


class FakeMonotonic:
    """The clock of the process-local caches (quantsaas.cache), moved by hand."""

    def __init__(self) -> None:
        self.now = time.monotonic()  # entries made before the swap keep their meaning

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def acme_key(acme, alice):
    created = api_key_create(
        organization=acme, created_by=alice, name="research", scopes=["read", "admin"]
    )
    client = key_client(created.raw_key)
    assert client.get(INSTRUMENTS).status_code == 200  # used once: cached from here on
    return created, client


@pytest.fixture
def globex_key(globex, mallory):
    created = api_key_create(
        organization=globex, created_by=mallory, name="bot", scopes=["read", "admin"]
    )
    client = key_client(created.raw_key)
    assert client.get(INSTRUMENTS).status_code == 200
    return created, client


def test_a_cached_key_revoked_in_another_process_is_refused_here_within_the_local_seconds(
    acme_key, monkeypatch
):
    created, client = acme_key
    clock = FakeMonotonic()
    monkeypatch.setattr(quantsaas.cache, "time", clock)

    # The other process: the row, then api_key_cache_forget, which reaches this process
    # only through the shared cache (the tombstone it leaves there).
    ApiKey.objects.filter(pk=created.api_key.pk).update(revoked_at=timezone.now())
    cache.set(
        api_key_cache._cache_key(created.api_key.key_hash),
        api_key_cache.TOMBSTONE,
        api_key_cache.TOMBSTONE_SECONDS,
    )
    clock.now += api_key_cache.LOCAL_SECONDS + 0.01

    assert "revoked" in refused(client.get(INSTRUMENTS))


def test_a_cached_key_revoked_through_the_service_is_refused_on_its_next_request(
    acme_key, alice, globex_key
):
    created, client = acme_key
    api_key = ApiKey.objects.select_related("organization").get(pk=created.api_key.pk)

    api_key_revoke(api_key=api_key, actor=alice)

    assert "revoked" in refused(client.get(INSTRUMENTS))
    assert globex_key[1].get(INSTRUMENTS).status_code == 200  # only that key stopped


def test_a_cached_key_that_revokes_itself_is_refused_on_its_next_request(acme_key):
    created, client = acme_key

    assert client.delete(f"{KEYS}/{created.api_key.pk}").status_code == 204

    assert "revoked" in refused(client.get(INSTRUMENTS))


def test_a_cached_key_revoked_on_the_web_page_is_refused_on_its_next_request(acme_key, alice, acme):
    created, client = acme_key
    page = client_for(alice, acme)

    page.post(f"/keys/{created.api_key.pk}/revoke/")

    assert ApiKey.objects.get(pk=created.api_key.pk).revoked_at is not None
    assert "revoked" in refused(client.get(INSTRUMENTS))


@pytest.mark.parametrize("how", ["instance", "queryset"])
def test_a_cached_key_whose_row_is_deleted_is_refused_on_its_next_request(
    acme_key, globex_key, how
):
    created, client = acme_key

    if how == "instance":
        ApiKey.objects.get(pk=created.api_key.pk).delete()
    else:
        ApiKey.objects.filter(pk=created.api_key.pk).delete()

    refused(client.get(INSTRUMENTS))
    assert globex_key[1].get(INSTRUMENTS).status_code == 200


def test_a_cached_key_of_a_deleted_organization_is_refused_on_its_next_request(
    acme_key, acme, globex_key
):
    _, client = acme_key

    Organization.objects.get(pk=acme.pk).delete()

    refused(client.get(INSTRUMENTS))
    assert globex_key[1].get(INSTRUMENTS).status_code == 200


def test_a_cached_key_an_operator_expires_through_a_save_is_refused_on_its_next_request(
    acme_key,
):
    created, client = acme_key
    api_key = ApiKey.objects.get(pk=created.api_key.pk)

    api_key.expires_at = timezone.now() - timedelta(minutes=1)
    api_key.save()

    assert "expired" in refused(client.get(INSTRUMENTS))


def test_a_cached_key_whose_expiry_is_lifted_works_again_at_once(acme, alice):
    created = api_key_create(
        organization=acme, created_by=alice, expires_at=timezone.now() + timedelta(hours=1)
    )
    api_key = ApiKey.objects.get(pk=created.api_key.pk)
    api_key.expires_at = timezone.now() - timedelta(seconds=1)
    api_key.save(update_fields=["expires_at"])
    client = key_client(created.raw_key)
    refused(client.get(INSTRUMENTS))  # the expired key is what the cache now holds

    api_key.expires_at = None
    api_key.save(update_fields=["expires_at"])

    assert client.get(INSTRUMENTS).status_code == 200


def test_a_repeated_request_with_a_cached_key_does_not_read_the_key_table(acme_key):
    _, client = acme_key

    with CaptureQueriesContext(connection) as queries:
        assert client.get(INSTRUMENTS).status_code == 200

    table = ApiKey._meta.db_table
    assert not [q["sql"] for q in queries if table in q["sql"]]


def test_each_cached_key_acts_for_its_own_organization(acme_key, globex_key):
    acme_created, acme_client = acme_key
    globex_created, globex_client = globex_key

    # Both keys are cached now; each still lists only its own organization's keys.
    for _ in range(2):
        assert [k["id"] for k in acme_client.get(KEYS).json()["data"]] == [acme_created.api_key.pk]
        assert [k["id"] for k in globex_client.get(KEYS).json()["data"]] == [
            globex_created.api_key.pk
        ]
    # Neither can revoke the other's key: another tenant's key does not exist for it.
    assert globex_client.delete(f"{KEYS}/{acme_created.api_key.pk}").status_code == 404
    assert acme_client.get(INSTRUMENTS).status_code == 200


def test_a_key_revoked_while_a_request_was_reading_it_is_refused_afterwards(
    acme, alice, monkeypatch
):
    """A request that read the key just before a revocation must not cache it as active.

    Another process revokes (row updated, cached copy forgotten, as api_key_revoke does)
    between this request's database read and its write to the cache.
    """
    from accounts.api_key_cache import api_key_cache_forget
    from accounts.services import api_keys

    created = api_key_create(
        organization=acme, created_by=alice, name="research", scopes=["read", "admin"]
    )
    client = key_client(created.raw_key)
    store = api_keys.api_key_cache_store

    def store_after_a_concurrent_revoke(api_key: ApiKey) -> None:
        if not ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=False).exists():
            ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())
            api_key_cache_forget(api_key.key_hash)
        store(api_key)

    monkeypatch.setattr(api_keys, "api_key_cache_store", store_after_a_concurrent_revoke)
    assert client.get(INSTRUMENTS).status_code == 200  # it began before the revocation
    monkeypatch.undo()

    assert "revoked" in refused(client.get(INSTRUMENTS))
