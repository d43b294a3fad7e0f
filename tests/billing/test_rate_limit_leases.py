"""Large limits are counted in leases: fewer Redis round trips, never more than the limit."""

from __future__ import annotations

import pytest
from django.conf import settings

from billing import ratelimit
from billing.models import Plan
from billing.ratelimit import lease_size, rate_limit_hit
from tests.conftest import client_for
from tests.factories import plan_override_with

pytestmark = pytest.mark.django_db


class _CountedScript:
    """The rate limiter's Lua script, counting its round trips (the Redis server's own
    command counters are shared with every other client and limiter)."""

    def __init__(self, script) -> None:
        self.script, self.calls = script, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.script(*args, **kwargs)


def test_small_limits_are_counted_exactly_and_large_ones_in_small_leases():
    free, pro, enterprise = (
        Plan.objects.get(code=code).requests_per_minute for code in ("free", "pro", "enterprise")
    )
    assert lease_size(free) == lease_size(pro) == 1
    assert 1 < lease_size(enterprise) <= enterprise // 1000
    assert lease_size(10**9) == ratelimit.LEASE_MAX


def test_a_lease_saves_round_trips_and_the_headers_still_count_down(acme, alice, monkeypatch):
    plan_override_with(organization=acme, requests_per_minute=100_000)
    client = client_for(alice)
    counted = _CountedScript(ratelimit._script_for(settings.REDIS_URL))
    monkeypatch.setattr(ratelimit, "_script_for", lambda url: counted)

    remaining = [int(client.get("/api/v1/usage")["RateLimit-Remaining"]) for _ in range(200)]

    assert counted.calls <= 200 // lease_size(100_000) + 1
    assert remaining == sorted(remaining, reverse=True)
    assert remaining[0] - remaining[-1] == 199


def test_processes_sharing_a_window_never_let_more_than_the_limit_through(acme):
    limit = 5_000
    plan_override_with(organization=acme, requests_per_minute=limit)
    processes = [{}, {}]  # each web process holds its own leases
    allowed = 0
    for i in range(limit + 100):
        ratelimit._leases = processes[i % 2]
        allowed += rate_limit_hit(organization=acme).allowed
    ratelimit._leases = {}

    assert allowed == limit  # every reservation was served, none beyond the limit


def test_a_downgrade_applies_to_the_next_request_despite_a_lease(acme, alice):
    plan_override_with(organization=acme, requests_per_minute=100_000)
    client = client_for(alice)
    assert client.get("/api/v1/usage").status_code == 200
    assert ratelimit._leases  # this process holds reserved requests

    plan_override_with(organization=acme, requests_per_minute=3)  # the newest override wins
    refused = client.get("/api/v1/usage")

    # The reserved batch already counts in the window, beyond the new limit.
    assert refused.status_code == 429
    assert refused["RateLimit-Limit"] == "3"
