"""A request that read the plan just before a downgrade cannot cache the old plan
after it: the invalidation leaves a tombstone that stores cannot replace."""

from __future__ import annotations

import billing.entitlements as entitlements_module
from billing.entitlements import entitlements_for
from billing.models import PlanOverride
from quantsaas.cache import LocalCache
from tests.factories import plan_grant


def test_a_request_racing_a_downgrade_cannot_recache_the_old_plan(acme, monkeypatch):
    plan_grant(organization=acme, code="pro")
    real_compute = entitlements_module.entitlements_compute

    def compute_then_downgrade_lands(**kwargs):
        # This request reads the database while the plan is still pro; before it stores
        # the answer, an operator removes the grant (another request, committed).
        answer = real_compute(**kwargs)
        PlanOverride.objects.filter(organization=acme).delete()
        return answer

    monkeypatch.setattr(entitlements_module, "entitlements_compute", compute_then_downgrade_lands)
    assert entitlements_for(organization=acme).plan == "pro"  # the racing request's answer
    monkeypatch.setattr(entitlements_module, "entitlements_compute", real_compute)

    LocalCache.clear_all()  # the next request, in any process
    assert entitlements_for(organization=acme).plan == "free"


def test_after_the_tombstone_answers_are_cached_again(acme, django_assert_num_queries):
    plan_grant(organization=acme, code="pro")
    entitlements_module.entitlements_invalidate(organization_id=acme.pk)
    entitlements_module.cache.delete(entitlements_module._cache_key(acme.pk))  # tombstone ended

    entitlements_for(organization=acme)
    LocalCache.clear_all()
    with django_assert_num_queries(0):
        assert entitlements_for(organization=acme).plan == "pro"
