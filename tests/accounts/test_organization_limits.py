"""Organizations per user are capped, so free quotas cannot be multiplied by scripting."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Organization
from accounts.services.organizations import (
    OrganizationLimitReached,
    membership_leave,
    organization_create,
)
from tests.conftest import client_for
from tests.factories import UserFactory, membership_add, plan_grant


def test_a_free_user_cannot_script_a_third_organization(alice, acme):
    client = client_for(alice, acme)
    second = client.post(reverse("organization_create"), {"name": "Second desk"})
    assert second.status_code == 302

    third = client.post(reverse("organization_create"), {"name": "Third desk"})

    assert third.status_code == 403
    assert "free plan" in third.content.decode()
    assert not Organization.objects.filter(name="Third desk").exists()
    assert Organization.objects.filter(memberships__user=alice).count() == 2


def test_handing_an_organization_over_does_not_free_a_slot(alice, acme):
    second = organization_create(name="Second desk", owner=alice)
    accomplice = UserFactory(email="accomplice@example.test")
    for organization in (acme, second):
        membership_add(organization=organization, user=accomplice, role="owner")
        membership_leave(organization=organization, user=alice)

    with pytest.raises(OrganizationLimitReached):
        organization_create(name="Third desk", owner=alice)


def test_paid_organizations_do_not_count_against_the_free_allowance(alice, acme):
    second = organization_create(name="Second desk", owner=alice)
    plan_grant(organization=second, code="pro")

    third = organization_create(name="Third desk", owner=alice)

    assert third.created_by == alice


def test_the_personal_organization_is_always_created(alice, acme):
    organization_create(name="Second desk", owner=alice)

    personal = organization_create(name="Alice", owner=alice, is_personal=True)

    assert personal.is_personal


def test_everyone_has_an_overall_cap(alice, acme, settings):
    settings.ACCOUNTS_ORGANIZATIONS_PER_USER = 1
    plan_grant(organization=acme, code="pro")

    with pytest.raises(OrganizationLimitReached, match="at most 1"):
        organization_create(name="Second desk", owner=alice)
