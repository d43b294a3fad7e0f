"""Per-organization rate limits: headers, 429, atomicity under concurrency, Redis outage."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections
from rest_framework.test import APIClient

from accounts.services.api_keys import api_key_create
from billing.models import Plan
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_free_plan():
    Plan.objects.filter(code="free").update(requests_per_minute=5)


def test_headers_count_down_and_the_limit_answers_429(small_free_plan, alice_client):
    remaining = []
    for _ in range(5):
        response = alice_client.get("/api/v1/usage")
        assert response.status_code == 200
        assert response["RateLimit-Limit"] == "5"
        assert 0 < int(response["RateLimit-Reset"]) <= 60
        remaining.append(int(response["RateLimit-Remaining"]))
    refused = alice_client.get("/api/v1/usage")

    assert remaining == [4, 3, 2, 1, 0]
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused["Retry-After"]) <= 60
    assert refused["RateLimit-Remaining"] == "0"


def test_organizations_have_separate_allowances(small_free_plan, alice_client, mallory_client):
    for _ in range(5):
        alice_client.get("/api/v1/usage")
    assert alice_client.get("/api/v1/usage").status_code == 429
    assert mallory_client.get("/api/v1/usage")["RateLimit-Remaining"] == "4"


def test_unauthenticated_calls_do_not_spend_an_allowance(small_free_plan, api_client, alice_client):
    assert api_client.get("/api/v1/usage").status_code == 401
    assert alice_client.get("/api/v1/usage")["RateLimit-Remaining"] == "4"


def test_parallel_requests_let_exactly_the_limit_through(acme, alice):
    Plan.objects.filter(code="free").update(requests_per_minute=7)
    raw_key = api_key_create(organization=acme, created_by=alice).raw_key
    workers = 24
    start = threading.Barrier(workers)
    # The threads share this test's database connection (psycopg 3 connections are
    # thread-safe), so they see its uncommitted rows and the test stays rolled back;
    # the rate limiting itself runs concurrently in Redis.
    shared = connections["default"]
    shared.inc_thread_sharing()

    def call(_: int) -> tuple[int, str]:
        connections["default"] = shared
        client = APIClient()
        start.wait()
        response = client.get("/api/v1/usage", HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        return response.status_code, response["RateLimit-Remaining"]

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(call, range(workers)))
    finally:
        shared.dec_thread_sharing()

    statuses = [status for status, _ in results]
    assert statuses.count(200) == 7
    assert statuses.count(429) == workers - 7
    # Each request that got through saw its own count: 6, 5, ... 0 remaining.
    assert sorted(int(r) for s, r in results if s == 200) == [0, 1, 2, 3, 4, 5, 6]
    assert {r for s, r in results if s == 429} == {"0"}


def test_redis_outage_limits_per_process_instead_of_failing_open(
    settings, alice_client, small_free_plan
):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{dead_port}/0"
    settings.RATE_LIMIT_OUTAGE_PROCESSES = 1  # this process holds the whole limit

    responses = [alice_client.get("/api/v1/usage") for _ in range(7)]

    assert [r.status_code for r in responses] == [200] * 5 + [429] * 2
    assert responses[0]["RateLimit-Limit"] == "5"
    assert [r["RateLimit-Remaining"] for r in responses[:5]] == ["4", "3", "2", "1", "0"]


def test_a_member_session_and_an_api_key_share_the_organizations_window(
    small_free_plan, acme, alice, carol
):
    raw_key = api_key_create(organization=acme, created_by=alice).raw_key
    client_for(carol, acme).get("/api/v1/usage")
    response = APIClient().get("/api/v1/usage", HTTP_X_API_KEY=raw_key)
    assert response["RateLimit-Remaining"] == "3"
