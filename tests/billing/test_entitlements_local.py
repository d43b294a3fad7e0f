"""The process-local layer in front of the cached entitlements.

A plan change made in this process applies to the very next request; one made by another
process (which can only clear the shared cache) applies here within
BILLING_ENTITLEMENTS_LOCAL_SECONDS. Requests show the plan in their rate-limit header.
"""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache

import quantsaas.cache
from billing.entitlements import entitlements_for
from billing.models import Plan, PlanOverride

INSTRUMENTS = "/api/v1/instruments?exchange=sim"
LIMITS = {"free": "60", "pro": "1200", "enterprise": "12000"}


def limit_of(client) -> str:
    response = client.get(INSTRUMENTS)
    assert response.status_code == 200, response.content
    return response["RateLimit-Limit"]


def another_process_changes_the_plan(override: PlanOverride, code: str) -> None:
    """A write in another process: no signal reaches this one, only the shared cache is
    cleared (what entitlements_invalidate does there)."""
    PlanOverride.objects.filter(pk=override.pk).update(plan=Plan.objects.get(code=code))
    cache.delete(f"billing:entitlements:{override.organization_id}")


class FakeClock:
    def __init__(self) -> None:
        self.now = time.monotonic()  # entries made before the swap keep their meaning

    def monotonic(self) -> float:
        return self.now


def test_an_override_saved_in_this_process_applies_to_the_very_next_request(
    alice_client, acme, settings
):
    settings.BILLING_ENTITLEMENTS_LOCAL_SECONDS = 3600  # the local layer would hold it all test
    assert limit_of(alice_client) == LIMITS["free"]

    override = PlanOverride.objects.create(
        organization=acme, plan=Plan.objects.get(code="pro"), reason="upgrade"
    )
    assert limit_of(alice_client) == LIMITS["pro"]

    override.plan = Plan.objects.get(code="enterprise")
    override.save()
    assert limit_of(alice_client) == LIMITS["enterprise"]

    override.delete()
    assert limit_of(alice_client) == LIMITS["free"]


def test_another_organizations_change_leaves_this_one_alone(
    alice_client, acme, globex, mallory_client, settings
):
    settings.BILLING_ENTITLEMENTS_LOCAL_SECONDS = 3600
    assert (limit_of(alice_client), limit_of(mallory_client)) == (LIMITS["free"], LIMITS["free"])

    PlanOverride.objects.create(
        organization=globex, plan=Plan.objects.get(code="pro"), reason="upgrade"
    )

    assert (limit_of(alice_client), limit_of(mallory_client)) == (LIMITS["free"], LIMITS["pro"])


def test_another_process_change_applies_here_once_the_local_seconds_pass(
    alice_client, acme, settings, monkeypatch
):
    clock = FakeClock()
    monkeypatch.setattr(quantsaas.cache, "time", clock)
    settings.BILLING_ENTITLEMENTS_LOCAL_SECONDS = 0.2
    override = PlanOverride.objects.create(
        organization=acme, plan=Plan.objects.get(code="free"), reason="test"
    )
    assert limit_of(alice_client) == LIMITS["free"]

    another_process_changes_the_plan(override, "pro")
    clock.now += 0.15
    assert limit_of(alice_client) == LIMITS["free"]  # this process's answer, still valid

    clock.now += 0.1  # 0.25 s after it was cached
    assert limit_of(alice_client) == LIMITS["pro"]


def test_without_an_invalidation_the_local_answer_lasts_at_most_the_local_seconds(
    alice_client, acme, settings
):
    settings.BILLING_ENTITLEMENTS_LOCAL_SECONDS = 0.2
    override = PlanOverride.objects.create(
        organization=acme, plan=Plan.objects.get(code="pro"), reason="test"
    )
    assert limit_of(alice_client) == LIMITS["pro"]

    another_process_changes_the_plan(override, "free")  # a downgrade
    time.sleep(0.25)

    assert limit_of(alice_client) == LIMITS["free"]
    assert entitlements_for(organization=acme).stream_delay_seconds == 900


@pytest.mark.parametrize("local_seconds", [0.2, 0])
def test_the_local_layer_never_outlives_its_setting(acme, settings, local_seconds):
    settings.BILLING_ENTITLEMENTS_LOCAL_SECONDS = local_seconds
    override = PlanOverride.objects.create(
        organization=acme, plan=Plan.objects.get(code="free"), reason="test"
    )
    assert entitlements_for(organization=acme).plan == "free"

    another_process_changes_the_plan(override, "pro")
    time.sleep(local_seconds + 0.05)

    assert entitlements_for(organization=acme).plan == "pro"
