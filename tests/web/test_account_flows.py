"""Account flows that must not lose a customer: a new verification link on request, an
invitation that prefills and verifies the invitee's address, confirmation before
leaving or removing a member, and email links on the address the site is served on."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from accounts.models import Invitation, Membership, Role, User
from accounts.services.invitations import invitation_token
from accounts.services.organizations import personal_organization_ensure
from tests.conftest import client_for
from tests.factories import UserFactory, membership_add

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


def test_the_verify_page_links_to_a_new_verification_email(client):
    page = client.get(reverse("account_email_verification_sent")).content.decode()

    assert reverse("verification_resend") in page


def test_a_new_verification_link_is_sent_once_a_minute_and_never_tells_who_exists(client):
    user = UserFactory(email="late@example.com")
    EmailAddress.objects.filter(user=user).update(verified=False)
    EmailAddress.objects.get_or_create(user=user, email=user.email, defaults={"verified": False})

    first = client.post(reverse("verification_resend"), {"email": "late@example.com"}, follow=True)
    again = client.post(reverse("verification_resend"), {"email": "late@example.com"}, follow=True)
    nobody = client.post(
        reverse("verification_resend"), {"email": "nobody@example.com"}, follow=True
    )

    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["late@example.com"]
    assert re.search(r"https?://testserver/accounts/confirm-email/\S+/", mail.outbox[0].body)
    for response in (first, again, nobody):
        assert "a new link is on its way" in response.content.decode()


def test_an_invited_person_signs_up_with_the_address_prefilled_and_verified(client, acme, alice):
    invitation = Invitation.objects.create(
        organization=acme,
        email="newhire@example.com",
        role=Role.MEMBER,
        invited_by=alice,
        expires_at=timezone.now() + timedelta(days=7),
    )
    link = reverse("invitation_accept", args=[invitation_token(invitation=invitation)])
    page = client.get(link).content.decode()
    signup_url = (
        re.search(r'href="(/accounts/signup/\?[^"]+)"', page).group(1).replace("&amp;", "&")
    )

    form = client.get(signup_url).content.decode()
    assert 'value="newhire@example.com"' in form
    response = client.post(
        signup_url,
        {
            "email": "newhire@example.com",
            "password1": "a-long-pass-phrase-42",
            "password2": "a-long-pass-phrase-42",
        },
    )

    user = User.objects.get(email="newhire@example.com")
    assert EmailAddress.objects.get(user=user).verified
    assert not [m for m in mail.outbox if "confirm-email" in m.body]  # no second email
    assert response.status_code == 302


def test_leaving_asks_for_confirmation_first(acme, alice, carol):
    membership = Membership.objects.get(organization=acme, user=carol)
    leave_url = reverse("membership_remove", args=[membership.pk])
    carol_client = client_for(carol, acme)

    team = carol_client.get(reverse("team")).content.decode()
    assert f'href="{leave_url}">Leave…</a>' in team
    confirm = carol_client.get(leave_url)
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "Leave Acme Capital?" in page and "Coming back takes a new invitation" in page
    assert Membership.objects.filter(pk=membership.pk).exists()  # asking changed nothing

    response = carol_client.post(leave_url)
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert not Membership.objects.filter(organization=acme, user=carol).exists()
    assert Membership.objects.filter(organization=acme, user=alice).exists()  # only carol
    # Carol has no organization left: the next page offers to create one, not Acme's team.
    after = carol_client.get(reverse("team"))
    assert after.status_code == 302 and after["Location"] == reverse("organization_create")


def test_removing_a_member_asks_for_confirmation_first(acme, alice, carol):
    carol_membership = Membership.objects.get(organization=acme, user=carol)
    alice_client = client_for(alice, acme)

    team = alice_client.get(reverse("team")).content.decode()
    assert f'href="{reverse("membership_remove", args=[carol_membership.pk])}"' in team
    confirm = alice_client.get(reverse("membership_remove", args=[carol_membership.pk]))
    assert confirm.status_code == 200
    assert "Remove carol@acme.test?" in confirm.content.decode()
    assert Membership.objects.filter(pk=carol_membership.pk).exists()  # asking changed nothing

    alice_client.post(reverse("membership_remove", args=[carol_membership.pk]))
    assert not Membership.objects.filter(pk=carol_membership.pk).exists()


def test_only_ones_own_personal_organization_is_called_personal(alice, carol):
    """A member of someone else's personal organization sees its name in the switcher,
    so two entries never both read "Personal"."""
    theirs = personal_organization_ensure(user=alice)
    membership_add(organization=theirs, user=carol, role=Role.MEMBER)
    personal_organization_ensure(user=carol)

    page = client_for(carol, theirs).get(reverse("team")).content.decode()
    switcher = page.split('id="org-switcher-select"')[1].split("</select>")[0]
    options = re.findall(r"<option [^>]*>([^<]*)</option>", switcher)
    assert options.count("Personal") == 1
    assert escape(theirs.name) in options


def test_email_links_default_to_the_port_the_site_is_served_on(monkeypatch):
    import importlib
    import sys

    monkeypatch.setenv("PORT", "8123")
    monkeypatch.delenv("SITE_URL", raising=False)
    module = sys.modules["quantsaas.settings"]
    try:
        reloaded = importlib.reload(module)
        assert reloaded.SITE_URL == "http://127.0.0.1:8123"
    finally:
        monkeypatch.undo()
        importlib.reload(module)
