"""Small builders for test objects; no fixture dumps."""

from __future__ import annotations

import factory
from allauth.account.models import EmailAddress

from accounts.models import Membership, Organization, User
from accounts.services.organizations import organization_create

TEST_PASSWORD = "correct-horse-battery-staple-42"


class UserFactory(factory.django.DjangoModelFactory):
    """A user with a verified email address and TEST_PASSWORD."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    password = factory.django.Password(TEST_PASSWORD)

    @factory.post_generation
    def verified(obj, create, extracted, **kwargs):
        if create and extracted is not False:
            EmailAddress.objects.create(user=obj, email=obj.email, verified=True, primary=True)


def OrganizationFactory(*, name: str = "Test Org", owner: User) -> Organization:
    return organization_create(name=name, owner=owner)


def membership_add(*, organization: Organization, user: User, role: str) -> Membership:
    return Membership.objects.create(organization=organization, user=user, role=role)


def plan_grant(*, organization: Organization, code: str = "pro") -> None:
    """Give `organization` a plan through an operator override (no Stripe involved)."""
    from billing.models import Plan, PlanOverride

    PlanOverride.objects.create(
        organization=organization, plan=Plan.objects.get(code=code), reason="test"
    )


def plan_override_with(*, organization: Organization, **limits):
    """Put `organization` on a private plan with these limits (free-plan values otherwise)."""
    from billing.models import Plan, PlanOverride

    defaults = {
        "requests_per_minute": 1_000,
        "ws_connections": 1,
        "ws_subscriptions": 5,
        "api_keys": 1,
    }
    plan = Plan.objects.create(
        code=f"test-{organization.pk}-{Plan.objects.count()}",
        name="Test plan",
        is_public=False,
        **{**defaults, **limits},
    )
    PlanOverride.objects.create(organization=organization, plan=plan, reason="test")
    return plan
