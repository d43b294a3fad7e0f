"""Inviting people by email and accepting through the link, via the real pages."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import mail, signing
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditLog, Invitation, Membership
from tests.conftest import client_for
from tests.factories import TEST_PASSWORD, UserFactory

LINK = re.compile(r"https?://\S+/invitations/\S+/")


def _invite(client, email: str, role: str = "member"):
    return client.post(reverse("invitation_create"), {"email": email, "role": role})


def _link_in_last_email() -> str:
    match = LINK.search(mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    return match.group(0)


def _path(link: str) -> str:
    return urlsplit(link).path


@pytest.fixture
def dave(db):
    return UserFactory(email="dave@example.test")


@pytest.fixture
def invited_link(alice_client, dave) -> str:
    """Alice invites Dave as an admin of Acme; the link from the email."""
    response = _invite(alice_client, "dave@example.test", role="admin")
    assert response.status_code == 302
    return _link_in_last_email()


def test_following_the_emailed_link_joins_the_organization(alice_client, acme, dave):
    response = _invite(alice_client, "dave@example.test", role="admin")
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["dave@example.test"]
    assert "Acme Capital" not in email.subject  # an organization name is attacker-chosen text
    assert "Acme Capital" in email.body
    link = _link_in_last_email()

    dave_client = client_for(dave)
    page = dave_client.get(_path(link))
    assert page.status_code == 200
    assert "Acme Capital" in page.content.decode()
    assert "Accept" in page.content.decode()

    joined = dave_client.post(_path(link))
    assert joined.status_code == 302
    assert joined["Location"] == reverse("dashboard")
    membership = Membership.objects.get(organization=acme, user=dave)
    assert membership.role == "admin"
    assert dave_client.session["organization_id"] == acme.pk
    assert Invitation.objects.get(email="dave@example.test").accepted_by == dave

    team = dave_client.get(reverse("team")).content.decode()
    assert "Team of Acme Capital" in team
    assert "dave@example.test" in team

    actions = set(AuditLog.objects.filter(organization=acme).values_list("action", flat=True))
    assert {AuditLog.Action.MEMBER_INVITED, AuditLog.Action.MEMBER_JOINED} <= actions


def test_link_is_built_on_the_configured_site_address(alice_client, settings):
    settings.SITE_URL = "https://app.quantsaas.example"
    _invite(alice_client, "dave@example.test")
    assert _link_in_last_email().startswith("https://app.quantsaas.example/invitations/")


def test_invited_address_matches_regardless_of_case(alice_client, acme, dave):
    _invite(alice_client, "Dave@Example.TEST")
    dave_client = client_for(dave)
    assert dave_client.post(_path(_link_in_last_email())).status_code == 302
    assert Membership.objects.filter(organization=acme, user=dave).exists()


def _links(html: str) -> dict[str, str]:
    """Each link's path mapped to its `next` parameter."""
    found = {}
    for href in re.findall(r'href="([^"]+)"', html):
        parts = urlsplit(unescape(href))
        if "next" in parse_qs(parts.query):
            found[parts.path] = parse_qs(parts.query)["next"][0]
    return found


def test_anonymous_visitor_is_offered_sign_in_and_sign_up_that_return_to_the_link(
    client, invited_link
):
    page = client.get(_path(invited_link))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Acme Capital" in html
    links = _links(html)
    assert links[reverse("account_login")] == _path(invited_link)
    assert links[reverse("account_signup")] == _path(invited_link)


def test_signing_in_from_the_invitation_returns_to_it(client, invited_link, dave):
    login_url = reverse("account_login")
    response = client.post(
        f"{login_url}?next={_path(invited_link)}",
        {"login": "dave@example.test", "password": TEST_PASSWORD},
    )
    assert response.status_code == 302
    assert response["Location"] == _path(invited_link)
    assert "Accept" in client.get(response["Location"]).content.decode()


def test_anonymous_visitor_cannot_accept(client, invited_link, acme):
    client.post(_path(invited_link))
    assert Membership.objects.filter(organization=acme).count() == 1
    assert Invitation.objects.get().accepted_at is None


def test_expired_invitation_is_refused(invited_link, acme, dave):
    Invitation.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    dave_client = client_for(dave)
    page = dave_client.get(_path(invited_link))
    assert page.status_code == 410
    assert "expired" in page.content.decode()
    assert dave_client.post(_path(invited_link)).status_code == 410
    assert not Membership.objects.filter(organization=acme, user=dave).exists()


def test_someone_else_signed_in_cannot_accept(invited_link, acme):
    eve = UserFactory(email="eve@example.test")
    eve_client = client_for(eve)
    page = eve_client.get(_path(invited_link))
    assert page.status_code == 403
    html = page.content.decode()
    assert "dave@example.test" in html
    assert "eve@example.test" in html
    assert eve_client.post(_path(invited_link)).status_code == 403
    assert not Membership.objects.filter(organization=acme, user=eve).exists()
    assert Invitation.objects.get().is_pending


def test_an_unverified_matching_address_cannot_accept(alice_client, acme):
    # The account claims the address but never proved it owns the inbox.
    frank = UserFactory(email="frank@example.test", verified=False)
    _invite(alice_client, "frank@example.test")
    response = client_for(frank).post(_path(_link_in_last_email()))
    assert response.status_code == 403
    assert not Membership.objects.filter(organization=acme, user=frank).exists()


def test_tampered_token_is_refused(invited_link, acme, dave):
    path = _path(invited_link)
    token = path.rstrip("/").rsplit("/", 1)[1]
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    dave_client = client_for(dave)
    response = dave_client.post(reverse("invitation_accept", kwargs={"token": tampered}))
    assert response.status_code == 404
    assert "not valid" in response.content.decode()
    assert not Membership.objects.filter(organization=acme, user=dave).exists()


def test_token_signed_for_another_purpose_is_refused(invited_link, acme, dave):
    # A valid signature of the id, but without the invitation salt.
    forged = signing.dumps(Invitation.objects.get().pk)
    response = client_for(dave).post(reverse("invitation_accept", kwargs={"token": forged}))
    assert response.status_code == 404
    assert not Membership.objects.filter(organization=acme, user=dave).exists()


def test_revoked_invitation_cannot_be_used(alice_client, invited_link, acme, dave):
    invitation = Invitation.objects.get()
    response = alice_client.post(reverse("invitation_revoke", args=[invitation.pk]))
    assert response.status_code == 302
    assert AuditLog.objects.filter(
        organization=acme, action=AuditLog.Action.INVITATION_REVOKED, target="dave@example.test"
    ).exists()

    page = client_for(dave).post(_path(invited_link))
    assert page.status_code == 410
    assert "revoked" in page.content.decode()
    assert not Membership.objects.filter(organization=acme, user=dave).exists()


def test_accepted_invitation_cannot_be_used_again(invited_link, acme, dave):
    dave_client = client_for(dave)
    assert dave_client.post(_path(invited_link)).status_code == 302
    again = dave_client.post(_path(invited_link))
    assert again.status_code == 410
    assert "already been used" in again.content.decode()
    assert Membership.objects.filter(organization=acme, user=dave).count() == 1
    assert AuditLog.objects.filter(action=AuditLog.Action.MEMBER_JOINED).count() == 1


def test_pending_invitations_are_listed_on_the_team_page(alice_client, invited_link):
    html = alice_client.get(reverse("team")).content.decode()
    assert "dave@example.test" in html
    assert "Pending invitations" in html


def test_member_cannot_invite(carol, acme):
    response = _invite(client_for(carol, acme), "dave@example.test")
    assert response.status_code == 403
    assert not Invitation.objects.exists()
    assert mail.outbox == []


def test_admin_cannot_invite_an_owner(bob, acme):
    response = _invite(client_for(bob, acme), "dave@example.test", role="owner")
    assert response.status_code == 403
    assert not Invitation.objects.exists()


def test_admin_can_invite_a_member(bob, acme):
    response = _invite(client_for(bob, acme), "dave@example.test", role="member")
    assert response.status_code == 302
    assert Invitation.objects.get().invited_by == bob


def test_inviting_an_existing_member_is_refused_with_a_message(alice_client, carol):
    response = _invite(alice_client, "CAROL@acme.test")
    assert response.status_code == 302
    assert not Invitation.objects.exists()
    assert "already a member" in alice_client.get(reverse("team")).content.decode()


def test_a_second_invitation_while_one_is_pending_is_refused(alice_client, invited_link):
    _invite(alice_client, "dave@example.test")
    assert Invitation.objects.count() == 1
    assert len(mail.outbox) == 1
    assert "pending invitation" in alice_client.get(reverse("team")).content.decode()


def test_invalid_email_redisplays_the_form_with_the_error(alice_client):
    response = _invite(alice_client, "not-an-email")
    assert response.status_code == 400
    assert "Enter a valid email address" in response.content.decode()


def test_another_organization_cannot_revoke_or_see_acme_invitations(mallory_client, invited_link):
    invitation = Invitation.objects.get()
    response = mallory_client.post(reverse("invitation_revoke", args=[invitation.pk]))
    assert response.status_code == 404
    invitation.refresh_from_db()
    assert invitation.is_pending
    assert "dave@example.test" not in mallory_client.get(reverse("team")).content.decode()
