"""API calls that have not proved who they are are limited per client address,
before any database work, and every 401 and 403 carries the RateLimit-* headers."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.services.api_keys import api_key_create
from tests.conftest import client_for

USAGE = "/api/v1/usage"
UNKNOWN_KEY = "qs_" + "x" * 43


def _client(address: str = "203.0.113.7", key: str | None = None) -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    if key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def small_window(settings):
    settings.API_UNAUTHENTICATED_PER_MINUTE = 3


def test_anonymous_calls_are_refused_per_address_once_the_window_is_full(db, small_window):
    client = _client()
    answers = [client.get(USAGE) for _ in range(3)]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert [a["RateLimit-Remaining"] for a in answers] == ["2", "1", "0"]
    assert answers[0]["RateLimit-Limit"] == "3"

    refused = client.get(USAGE)

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused["Retry-After"]) <= 60
    assert refused["RateLimit-Remaining"] == "0"
    # Another address has its own window.
    assert _client("198.51.100.9").get(USAGE).status_code == 401


def test_unknown_keys_are_refused_before_any_database_work(
    db, small_window, django_assert_num_queries
):
    client = _client(key=UNKNOWN_KEY)
    for _ in range(3):
        assert client.get(USAGE).status_code == 401

    with django_assert_num_queries(0):
        refused = client.get(USAGE)

    assert refused.status_code == 429


def test_a_bogus_session_cookie_costs_no_query_once_refused(
    db, small_window, django_assert_num_queries
):
    client = _client()
    client.cookies["sessionid"] = "forged-session-id-0000000000000000"
    for _ in range(3):
        client.get(USAGE)

    with django_assert_num_queries(0):
        assert client.get(USAGE).status_code == 429


def test_customers_do_not_spend_the_address_window(acme, alice, small_window):
    raw_key = api_key_create(organization=acme, created_by=alice, name="prog").raw_key
    keyed = _client(key=raw_key)
    browser = client_for(alice, acme)
    browser.defaults["REMOTE_ADDR"] = "203.0.113.7"
    for _ in range(5):
        assert keyed.get(USAGE).status_code == 200
        assert browser.get(USAGE).status_code == 200

    assert _client().get(USAGE).status_code == 401  # the address still has its window


def test_a_revoked_key_counts_as_a_bad_key(acme, alice, small_window):
    created = api_key_create(organization=acme, created_by=alice, name="old")
    client = _client(key=created.raw_key)
    assert client.get(USAGE).status_code == 200  # now cached as active
    from accounts.services.api_keys import api_key_revoke

    api_key_revoke(api_key=created.api_key, actor=alice)
    answers = [client.get(USAGE).status_code for _ in range(4)]

    assert answers == [401, 401, 401, 429]


def test_a_403_carries_the_organizations_rate_limit_headers(acme, carol):
    refused = client_for(carol, acme).post("/api/v1/keys", {"name": "x"}, format="json")

    assert refused.status_code == 403
    assert refused["RateLimit-Limit"] == "60"  # the free plan's, not the address's
    assert int(refused["RateLimit-Remaining"]) == 59
    assert 0 < int(refused["RateLimit-Reset"]) <= 60


def test_a_401_carries_rate_limit_headers(db):
    refused = _client(key="not-a-key").get(USAGE)

    assert refused.status_code == 401
    for header in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        assert refused[header].isdigit()
