"""Webhook signatures: ``QuantSaaS-Signature: t=<unix seconds>,v1=<hex>``.

The hex is HMAC-SHA256 with the organization's secret over ``f"{t}.{body}"``, the
scheme Stripe uses, so receivers can reuse what they know; the timestamp inside the
signed text lets them refuse replays older than a tolerance (docs/alerts.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "QuantSaaS-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
TOLERANCE_SECONDS = 300


def secret_generate() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature_compute(*, secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(*, secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={signature_compute(secret=secret, timestamp=t, body=body)}"


def signature_verify(
    *, secret: str, header: str, body: bytes, tolerance: int = TOLERANCE_SECONDS
) -> bool:
    """What a receiver does; used by our tests and shown in docs/alerts.md."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = signature_compute(secret=secret, timestamp=timestamp, body=body)
    return hmac.compare_digest(expected, parts.get("v1", ""))
