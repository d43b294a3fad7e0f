"""Invitations are rate-limited per inviter and per organization, and say nothing
attacker-chosen in the subject."""

from __future__ import annotations

from django.core import mail
from django.urls import reverse

from accounts.models import Invitation
from accounts.services.organizations import organization_create
from tests.conftest import client_for


def _invite(client, email: str):
    return client.post(reverse("invitation_create"), {"email": email, "role": "member"})


def test_an_inviter_is_stopped_after_the_hourly_allowance(alice, acme, settings):
    settings.INVITATIONS_PER_INVITER_PER_HOUR = 3
    client = client_for(alice, acme)
    for n in range(3):
        assert _invite(client, f"person{n}@example.test").status_code == 302

    refused = _invite(client, "person3@example.test")

    assert refused.status_code == 302
    page = client.get(refused["Location"]).content.decode()
    assert "too many invitations" in page
    assert not Invitation.objects.filter(email="person3@example.test").exists()
    assert len(mail.outbox) == 3

    # The allowance is the person's, not per organization: switching does not reset it.
    other = organization_create(name="Other desk", owner=alice)
    client = client_for(alice, other)
    _invite(client, "person4@example.test")
    assert not Invitation.objects.filter(email="person4@example.test").exists()


def test_an_organization_is_stopped_after_the_daily_allowance(alice, bob, acme, settings):
    settings.INVITATIONS_PER_ORGANIZATION_PER_DAY = 2
    _invite(client_for(alice, acme), "one@example.test")
    _invite(client_for(bob, acme), "two@example.test")

    _invite(client_for(bob, acme), "three@example.test")

    assert Invitation.objects.filter(organization=acme).count() == 2
    assert len(mail.outbox) == 2


def test_the_subject_does_not_carry_the_organization_name(alice, settings):
    organization = organization_create(
        name="URGENT your account is suspended verify now", owner=alice
    )
    _invite(client_for(alice, organization), "victim@example.test")

    subject = mail.outbox[-1].subject
    assert "URGENT" not in subject
    assert subject == "[QuantSaaS] You are invited to join a team on QuantSaaS"
