"""Two-factor sign-in for tests: a TOTP device and codes computed here (RFC 6238),
independently of allauth's own implementation, and a staff client signed in the
real way (password, then code)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time

from allauth.account.models import EmailAddress
from allauth.mfa.totp.internal.auth import TOTP
from django.test import Client

from tests.factories import TEST_PASSWORD

PERIOD = 30


def totp_code(secret: str, *, at: float | None = None) -> str:
    """The 6-digit code an authenticator app shows for `secret` (base32) at `at`."""
    key = base64.b32decode(secret, casefold=True)
    counter = int((time.time() if at is None else at) // PERIOD)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = (struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{value:06d}"


def fresh_totp_code(secret: str) -> str:
    """A code that stays valid for the next two seconds (waits out a window's end)."""
    left = PERIOD - time.time() % PERIOD
    if left < 2:
        time.sleep(left + 0.05)
    return totp_code(secret)


def totp_device_add(user) -> str:
    """Give `user` a TOTP authenticator, as scanning the setup QR code would; its secret."""
    secret = base64.b32encode(secrets.token_bytes(20)).decode()
    TOTP.activate(user, secret)
    return secret


def sign_in_with_totp(user, secret: str, *, client: Client | None = None) -> Client:
    """Sign `user` in through allauth: password first, then the code."""
    client = client or Client()
    EmailAddress.objects.get_or_create(
        user=user, email=user.email, defaults={"verified": True, "primary": True}
    )
    first = client.post("/accounts/login/", {"login": user.email, "password": TEST_PASSWORD})
    assert first.status_code == 302 and "/2fa/authenticate/" in first["Location"], first
    second = client.post(first["Location"], {"code": fresh_totp_code(secret)})
    assert second.status_code == 302, second.content.decode()[:2000]
    return client


def staff_client(user) -> Client:
    """A staff member signed in with TOTP, as the admin requires."""
    user.set_password(TEST_PASSWORD)  # fixtures made elsewhere (admin_user) have their own
    user.save(update_fields=["password"])
    return sign_in_with_totp(user, totp_device_add(user))
