"""Staff sign in through allauth with TOTP before the admin opens; every user may
turn TOTP on; code attempts are rate-limited."""

from __future__ import annotations

from django.test import Client

from tests.factories import TEST_PASSWORD, UserFactory
from tests.mfa import sign_in_with_totp, totp_code, totp_device_add


def _staff(email: str = "ops@quantsaas.test"):
    return UserFactory(email=email, is_staff=True, is_superuser=True)


def test_staff_without_mfa_cannot_reach_the_admin_and_are_sent_to_set_it_up(db):
    staff = _staff()
    client = Client()
    signed_in = client.post("/accounts/login/", {"login": staff.email, "password": TEST_PASSWORD})
    assert signed_in.status_code == 302  # a password alone: signed in, but not for the admin

    for path in ("/admin/", "/admin/accounts/apikey/", "/admin/accounts/user/"):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/2fa/totp/activate/")
    # Setting up a second factor asks for the password again (allauth's reauthentication).
    confirm = client.get(response["Location"])
    assert confirm["Location"].startswith("/accounts/reauthenticate/")
    back = client.post(confirm["Location"], {"password": TEST_PASSWORD})
    setup = client.get(back["Location"])
    assert setup.status_code == 200
    assert "svg" in setup.content.decode().lower()  # the QR code to scan


def test_staff_with_a_totp_device_and_a_valid_code_reach_the_admin(db):
    staff = _staff()
    secret = totp_device_add(staff)

    client = sign_in_with_totp(staff, secret)

    response = client.get("/admin/")
    assert response.status_code == 200
    assert "Site administration" in response.content.decode()


def test_a_password_only_session_of_staff_with_a_device_must_confirm_a_code(db):
    staff = _staff()
    secret = totp_device_add(staff)
    client = Client()
    client.force_login(staff)  # e.g. a session from before the device was added

    response = client.get("/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/2fa/reauthenticate/")
    confirmed = client.post(response["Location"], {"code": totp_code(secret)})
    assert confirmed.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_a_password_without_the_code_does_not_sign_in(db):
    staff = _staff()
    totp_device_add(staff)
    client = Client()
    first = client.post("/accounts/login/", {"login": staff.email, "password": TEST_PASSWORD})
    assert "/2fa/authenticate/" in first["Location"]

    wrong = client.post(first["Location"], {"code": "000000"})

    assert wrong.status_code == 200  # the code form again, with an error
    response = client.get("/admin/", follow=True)
    # Still pending: the sign-in sends them back to the code step, never into the admin.
    assert response.redirect_chain[-1][0] == "/accounts/2fa/authenticate/"
    assert "Site administration" not in response.content.decode()


def test_the_django_admin_login_form_is_not_served(db):
    response = Client().get("/admin/login/?next=/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_code_attempts_are_rate_limited(db, settings):
    settings.ACCOUNT_RATE_LIMITS = {"login_failed": "20/m/ip,3/5m/key"}
    staff = _staff()
    secret = totp_device_add(staff)
    client = Client()
    first = client.post("/accounts/login/", {"login": staff.email, "password": TEST_PASSWORD})
    for _ in range(3):
        client.post(first["Location"], {"code": "000000"})

    correct = client.post(first["Location"], {"code": totp_code(secret)})

    assert correct.status_code in (200, 429)  # refused: too many attempts, even a right one
    assert client.get("/admin/").status_code == 302


def test_every_user_can_turn_on_totp(alice):
    client = Client()
    client.post("/accounts/login/", {"login": alice.email, "password": TEST_PASSWORD})

    page = client.get("/accounts/2fa/")

    assert page.status_code == 200
    confirm = client.get("/accounts/2fa/totp/activate/")
    back = client.post(confirm["Location"], {"password": TEST_PASSWORD})
    assert client.get(back["Location"]).status_code == 200
    # And once on, their sign-in asks for the code.
    totp_device_add(alice)
    first = Client().post("/accounts/login/", {"login": alice.email, "password": TEST_PASSWORD})
    assert "/2fa/authenticate/" in first["Location"]
