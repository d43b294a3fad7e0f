"""The API keys web page: list, create (the key shown once, copy button), revoke."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey, AuditLog
from accounts.services.api_keys import api_key_create

RAW_KEY = re.compile(r"qs_[A-Za-z0-9_-]{43}")


def page_client(user, organization=None, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    if organization is not None:
        session = client.session
        session["organization_id"] = organization.pk
        session.save()
    return client


@pytest.fixture
def alice_page(alice, acme) -> Client:
    return page_client(alice, acme)


@pytest.fixture
def acme_key(acme, alice):
    return api_key_create(organization=acme, created_by=alice, name="research").api_key


def test_page_lists_the_organizations_keys_masked_with_status(
    alice_page, acme_key, globex, mallory
):
    api_key_create(organization=globex, created_by=mallory, name="globex-secret-project")

    response = alice_page.get(reverse("api_keys"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "research" in page
    assert acme_key.masked in page
    assert "active" in page
    assert "globex-secret-project" not in page
    assert acme_key.key_hash not in page


def test_creating_a_key_shows_it_once_with_a_copy_button(alice_page):
    # Post/Redirect/Get: a reload of the page showing the key never posts again.
    response = alice_page.post(reverse("api_key_create"), {"name": "notebook"}, follow=True)

    assert response.redirect_chain == [(reverse("api_key_create"), 302)]
    assert response.status_code == 200
    page = response.content.decode()
    [raw_key] = set(RAW_KEY.findall(page))
    assert ApiKey.objects.get(name="notebook").last_four == raw_key[-4:]
    assert "no-store" in response["Cache-Control"]
    assert "data-copy-target" in page
    assert "js/copy-to-clipboard.js" in page
    assert "<script>" not in page  # no inline script: a strict CSP must not break the page

    # Neither the list, nor a reload of the page, nor the session holds it afterwards.
    assert raw_key not in str(dict(alice_page.session.items()))
    assert raw_key not in alice_page.get(reverse("api_keys")).content.decode()
    reload = alice_page.get(reverse("api_key_create"), follow=True)
    assert reload.status_code == 200
    assert raw_key not in reload.content.decode()
    assert "shown only once" in reload.content.decode()
    assert ApiKey.objects.filter(name="notebook").count() == 1


def test_copy_script_is_served(alice_page):
    response = alice_page.get("/static/js/copy-to-clipboard.js")

    assert response.status_code == 200
    assert b"clipboard" in b"".join(response.streaming_content)


def test_expiry_date_sets_when_the_key_stops_working(alice_page):
    day = timezone.now().date() + timedelta(days=30)

    alice_page.post(reverse("api_key_create"), {"name": "temp", "expires_on": day.isoformat()})

    expires_at = ApiKey.objects.get(name="temp").expires_at
    assert expires_at == datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)


def test_an_expiry_in_the_past_is_refused_and_creates_nothing(alice_page):
    yesterday = timezone.now().date() - timedelta(days=1)

    response = alice_page.post(
        reverse("api_key_create"), {"name": "late", "expires_on": yesterday.isoformat()}
    )

    assert response.status_code == 400
    assert "future" in response.content.decode()
    assert not RAW_KEY.search(response.content.decode())
    assert not ApiKey.objects.exists()


def test_revoking_asks_first_then_revokes(alice_page, acme_key):
    url = reverse("api_key_revoke", args=[acme_key.pk])

    confirm = alice_page.get(url)
    assert confirm.status_code == 200
    assert acme_key.masked in confirm.content.decode()
    acme_key.refresh_from_db()
    assert acme_key.revoked_at is None

    response = alice_page.post(url, follow=True)

    assert response.redirect_chain[-1][0] == reverse("api_keys")
    acme_key.refresh_from_db()
    assert acme_key.revoked_at is not None
    assert "revoked" in response.content.decode()
    assert AuditLog.objects.filter(action=AuditLog.Action.KEY_REVOKED).count() == 1


def test_revoking_needs_the_csrf_token(alice, acme, acme_key):
    client = page_client(alice, acme, enforce_csrf_checks=True)

    response = client.post(reverse("api_key_revoke", args=[acme_key.pk]))

    assert response.status_code == 403
    acme_key.refresh_from_db()
    assert acme_key.revoked_at is None


def test_a_member_sees_the_list_read_only_and_cannot_create_or_revoke(acme, carol, acme_key):
    client = page_client(carol, acme)

    page = client.get(reverse("api_keys"))
    assert page.status_code == 200
    assert acme_key.masked in page.content.decode()
    assert reverse("api_key_create") not in page.content.decode()
    assert reverse("api_key_revoke", args=[acme_key.pk]) not in page.content.decode()

    assert client.post(reverse("api_key_create"), {"name": "sneaky"}).status_code == 403
    assert client.post(reverse("api_key_revoke", args=[acme_key.pk])).status_code == 403

    assert list(ApiKey.objects.values_list("name", flat=True)) == ["research"]
    acme_key.refresh_from_db()
    assert acme_key.revoked_at is None


def test_another_organization_gets_404_for_the_key(mallory, globex, acme_key):
    client = page_client(mallory, globex)
    url = reverse("api_key_revoke", args=[acme_key.pk])

    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    acme_key.refresh_from_db()
    assert acme_key.revoked_at is None


def test_signed_out_visitors_are_sent_to_sign_in(db):
    response = Client().get(reverse("api_keys"))

    assert response.status_code == 302
    assert reverse("account_login") in response["Location"]


def test_a_key_beyond_the_plans_allowance_is_refused_on_the_page(alice_page, acme_key):
    response = alice_page.post(reverse("api_key_create"), {"name": "second"})

    assert response.status_code == 403
    [reason] = response.context["form"].non_field_errors()
    assert reason in response.content.decode()
    assert not RAW_KEY.search(response.content.decode())
    assert ApiKey.objects.count() == 1
