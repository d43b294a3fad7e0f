"""Creating organizations and switching the current one, through the real pages."""

from __future__ import annotations

from django.urls import reverse

from accounts.models import AuditLog, Membership, Organization, Role
from tests.conftest import client_for
from tests.factories import OrganizationFactory


def _switch(client, organization_id, next_url: str = ""):
    return client.post(
        reverse("organization_switch"), {"organization_id": organization_id, "next": next_url}
    )


def test_creating_an_organization_makes_you_its_owner_and_current(alice_client, alice, acme):
    response = alice_client.post(reverse("organization_create"), {"name": "  Alpha   Research "})
    assert response.status_code == 302
    created = Organization.objects.get(name="Alpha Research")
    assert Membership.objects.get(organization=created, user=alice).role == Role.OWNER
    assert alice_client.session["organization_id"] == created.pk
    assert AuditLog.objects.filter(
        organization=created, action=AuditLog.Action.ORGANIZATION_CREATED, actor=alice
    ).exists()
    assert "Team of Alpha Research" in alice_client.get(response["Location"]).content.decode()


def test_organization_needs_a_name(alice_client):
    response = alice_client.post(reverse("organization_create"), {"name": "   "})
    assert response.status_code == 400
    assert not Organization.objects.filter(name="").exists()


def test_create_page_shows_the_form(alice_client):
    response = alice_client.get(reverse("organization_create"))
    assert response.status_code == 200
    assert 'name="name"' in response.content.decode()


def test_pages_require_signing_in(client):
    for name in ("organization_create", "team"):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login"))


def test_switching_to_an_organization_you_belong_to(alice, acme):
    research = OrganizationFactory(name="Research Desk", owner=alice)
    client = client_for(alice, acme)
    response = _switch(client, research.pk, next_url=reverse("team"))
    assert response.status_code == 302
    assert response["Location"] == reverse("team")
    assert client.session["organization_id"] == research.pk
    assert "Team of Research Desk" in client.get(reverse("team")).content.decode()


def test_switching_ignores_a_next_address_on_another_site(alice, acme):
    research = OrganizationFactory(name="Research Desk", owner=alice)
    client = client_for(alice, acme)
    for unsafe in ("https://evil.example/phish", "//evil.example/phish"):
        response = _switch(client, research.pk, next_url=unsafe)
        assert response["Location"] == reverse("dashboard")


def test_switching_to_an_organization_you_do_not_belong_to_is_refused(alice_client, acme, globex):
    response = _switch(alice_client, globex.pk, next_url=reverse("team"))
    assert response.status_code == 404
    assert alice_client.session["organization_id"] == acme.pk
    html = alice_client.get(reverse("team")).content.decode()
    assert "Team of Acme Capital" in html
    assert "Globex" not in html


def test_switching_needs_a_post(alice_client, acme):
    assert alice_client.get(reverse("organization_switch")).status_code == 405


def test_the_header_switcher_offers_only_your_organizations(alice_client, globex):
    html = alice_client.get(reverse("team")).content.decode()
    assert reverse("organization_switch") in html
    assert "Acme Capital" in html
    assert "Globex Trading" not in html
