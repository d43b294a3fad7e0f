"""Signup, verification, login, logout and password flows through the real allauth views.

Everything goes through the Django test client and the real URLs, templates, database
and mail outbox: what a person signing up would see and receive.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from accounts.models import Membership, Role, User
from tests.factories import TEST_PASSWORD, UserFactory

NEW_PASSWORD = "a-brand-new-passphrase-77"
SITE_HEADER = 'class="site-header"'

pytestmark = pytest.mark.django_db


def _signup(client: Client, email: str, password: str = TEST_PASSWORD):
    return client.post(
        reverse("account_signup"),
        {"email": email, "password1": password, "password2": password},
    )


def _login(client: Client, email: str, password: str = TEST_PASSWORD, **kwargs):
    return client.post(reverse("account_login"), {"login": email, "password": password}, **kwargs)


def _link_path(message: mail.EmailMessage) -> str:
    """The path of the first link in an email (the host depends on the request)."""
    match = re.search(r"https?://\S+", message.body)
    assert match, f"no link in email: {message.body!r}"
    return urlparse(match.group(0)).path


def _mails_to(email: str) -> list[mail.EmailMessage]:
    return [m for m in mail.outbox if email in m.to]


def test_signup_creates_the_user_and_a_personal_organization_they_own(client):
    response = _signup(client, "dana@fund.test")

    assert response.status_code == 302
    user = User.objects.get(email="dana@fund.test")
    assert user.check_password(TEST_PASSWORD)
    membership = Membership.objects.select_related("organization").get(user=user)
    assert membership.role == Role.OWNER
    assert membership.organization.is_personal
    assert "dana" in membership.organization.name


def test_signup_sends_a_quantsaas_verification_email_with_a_confirmation_link(client):
    _signup(client, "dana@fund.test")

    [message] = _mails_to("dana@fund.test")
    assert "QuantSaaS" in message.subject
    assert "QuantSaaS" in message.body
    assert _link_path(message).startswith("/accounts/confirm-email/")


def test_signup_lands_on_the_verification_sent_page(client):
    response = _signup(client, "dana@fund.test")

    assert response["Location"] == reverse("account_email_verification_sent")
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert SITE_HEADER in page.content.decode()
    assert "Verify Your Email Address" in page.content.decode()


def test_login_before_verifying_is_held_at_the_verification_page(client):
    _signup(client, "dana@fund.test")
    client.logout()
    mail.outbox.clear()

    response = _login(client, "dana@fund.test")

    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
    assert client.get(reverse("dashboard"))["Location"].startswith(reverse("account_login"))
    # a fresh verification email is sent so the person is not stuck
    assert len(_mails_to("dana@fund.test")) == 1


def test_confirmation_link_shows_a_page_on_get_and_verifies_only_on_post(client):
    _signup(client, "dana@fund.test")
    path = _link_path(_mails_to("dana@fund.test")[0])
    address = EmailAddress.objects.get(email="dana@fund.test")

    page = client.get(path)
    assert page.status_code == 200
    assert SITE_HEADER in page.content.decode()
    assert "dana@fund.test" in page.content.decode()
    address.refresh_from_db()
    assert not address.verified  # a GET (e.g. a mail scanner) must not confirm

    response = client.post(path)
    assert response.status_code == 302
    address.refresh_from_db()
    assert address.verified


def test_full_journey_signup_verify_logout_and_login_reaches_the_dashboard(client):
    _signup(client, "dana@fund.test")
    client.post(_link_path(_mails_to("dana@fund.test")[0]))
    client.post(reverse("account_logout"))
    organization = Membership.objects.get(user__email="dana@fund.test").organization

    response = _login(client, "dana@fund.test", follow=True)

    assert response.redirect_chain[-1][0] == reverse("dashboard")
    body = response.content.decode()
    assert escape(organization.name) in body
    assert "dana@fund.test" in body  # the header shows who is signed in
    assert "Owner" in body


def test_wrong_password_shows_an_error_on_the_login_page(client):
    UserFactory(email="erin@fund.test")

    response = _login(client, "erin@fund.test", password="not-the-password")

    assert response.status_code == 200
    body = response.content.decode()
    assert 'class="form-errors"' in body
    assert "not correct" in body
    assert "_auth_user_id" not in client.session


def test_logout_signs_the_user_out(client):
    user = UserFactory(email="erin@fund.test")
    client.force_login(user)

    response = client.post(reverse("account_logout"))

    assert response.status_code == 302
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("dashboard"))["Location"].startswith(reverse("account_login"))


def test_password_reset_email_link_sets_a_new_password_that_then_logs_in(client):
    UserFactory(email="erin@fund.test")

    response = client.post(reverse("account_reset_password"), {"email": "erin@fund.test"})
    assert response["Location"] == reverse("account_reset_password_done")
    [message] = _mails_to("erin@fund.test")
    assert "QuantSaaS" in message.body

    form_page = client.get(_link_path(message), follow=True)
    assert form_page.status_code == 200
    assert SITE_HEADER in form_page.content.decode()
    set_password_path = form_page.redirect_chain[-1][0]
    done = client.post(
        set_password_path,
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        follow=True,
    )
    assert done.redirect_chain[-1][0] == reverse("account_reset_password_from_key_done")

    fresh = Client()
    assert _login(fresh, "erin@fund.test", TEST_PASSWORD).status_code == 200  # old one refused
    assert _login(fresh, "erin@fund.test", NEW_PASSWORD)["Location"] == reverse("dashboard")


def test_password_reset_link_cannot_be_used_twice(client):
    UserFactory(email="erin@fund.test")
    client.post(reverse("account_reset_password"), {"email": "erin@fund.test"})
    link = _link_path(_mails_to("erin@fund.test")[0])
    form_page = client.get(link, follow=True)
    client.post(
        form_page.redirect_chain[-1][0], {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )

    again = Client().get(link, follow=True)

    assert "Bad Token" in again.content.decode()


def test_password_change_while_signed_in(client):
    user = UserFactory(email="erin@fund.test")
    client.force_login(user)

    page = client.get(reverse("account_change_password"))
    assert page.status_code == 200
    response = client.post(
        reverse("account_change_password"),
        {"oldpassword": TEST_PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert "_auth_user_id" in client.session  # still signed in after changing it


def test_password_change_with_a_wrong_current_password_is_refused(client):
    user = UserFactory(email="erin@fund.test")
    client.force_login(user)

    response = client.post(
        reverse("account_change_password"),
        {"oldpassword": "wrong", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    assert response.status_code == 200
    assert 'class="errorlist"' in response.content.decode()
    user.refresh_from_db()
    assert user.check_password(TEST_PASSWORD)


def test_signup_with_an_existing_email_creates_no_account(client):
    UserFactory(email="erin@fund.test")

    response = _signup(client, "Erin@Fund.test", password=NEW_PASSWORD)

    # allauth does not reveal that the address is taken (no account enumeration):
    # the page looks like a normal signup, and the owner of the address is told by email.
    assert response.status_code == 302
    assert User.objects.filter(email__iexact="erin@fund.test").count() == 1
    assert not User.objects.get(email="erin@fund.test").check_password(NEW_PASSWORD)
    [message] = _mails_to("erin@fund.test")
    assert "already" in message.body
    assert Membership.objects.filter(user__email__iexact="erin@fund.test").count() == 0


@pytest.mark.parametrize(
    "url_name",
    [
        "account_login",
        "account_signup",
        "account_reset_password",
        "account_reset_password_done",
        "account_email_verification_sent",
    ],
)
def test_signed_out_account_pages_render_in_the_site_look(client, url_name):
    response = client.get(reverse(url_name))

    assert response.status_code == 200
    body = response.content.decode()
    assert SITE_HEADER in body
    assert 'class="main-auth"' in body
    assert "css/site.css" in body


@pytest.mark.parametrize("url_name", ["account_change_password", "account_email", "account_logout"])
def test_signed_in_account_pages_render_in_the_site_look(client, url_name):
    client.force_login(UserFactory(email="erin@fund.test"))

    response = client.get(reverse(url_name))

    assert response.status_code == 200
    body = response.content.decode()
    assert SITE_HEADER in body
    assert "erin@fund.test" in body
    assert 'class="btn btn-primary"' in body or 'class="btn btn-danger"' in body


def test_invalid_confirmation_link_explains_itself(client):
    response = client.get(reverse("account_confirm_email", args=["not-a-real-key"]))

    assert response.status_code == 200
    assert SITE_HEADER in response.content.decode()
    assert "expired or is invalid" in response.content.decode()
