"""Sending one delivery: a signed webhook POST or an email. Called by alerts.tasks.

Each attempt is written to the delivery row, which is the log customers see. A
webhook counts as delivered on any 2xx; anything else (or no answer within
WEBHOOK_TIMEOUT_SECONDS) is retried by the task with backoff.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import send_mail

from alerts.models import AlertDelivery
from alerts.services import alert_webhook_secret_ensure
from alerts.signing import HEADER, signature_header

WEBHOOK_TIMEOUT_SECONDS = 5
USER_AGENT = "QuantSaaS-Alerts/1"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None
    error: str = ""
    retry: bool = True  # False: retrying cannot help (a refused address)


def webhook_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes signed and sent (compact JSON, keys sorted)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def _address_refused(url: str) -> str | None:
    """SSRF guard at send time: the name must not resolve to our own networks."""
    if settings.ALERTS_WEBHOOK_ALLOW_PRIVATE:
        return None
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as exc:
        return f"cannot resolve {host}: {exc}"
    for info in infos:
        if not ipaddress.ip_address(info[4][0]).is_global:
            return f"{host} resolves to a non-public address"
    return None


def webhook_send(delivery: AlertDelivery) -> Outcome:
    refused = _address_refused(delivery.target)
    if refused:
        return Outcome(ok=False, error=refused, retry=False)
    body = webhook_body(delivery.firing.payload)
    secret = alert_webhook_secret_ensure(organization=delivery.organization)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        HEADER: signature_header(secret=secret, body=body),
        "QuantSaaS-Event-Id": delivery.firing.event_id,
    }
    try:
        response = requests.post(
            delivery.target,
            data=body,
            headers=headers,
            timeout=WEBHOOK_TIMEOUT_SECONDS,
            allow_redirects=False,  # a redirect could lead the request inside our network
        )
    except requests.RequestException as exc:
        return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= response.status_code < 300:
        return Outcome(ok=True, status=response.status_code)
    return Outcome(ok=False, status=response.status_code, error=f"HTTP {response.status_code}")


def email_text(payload: dict[str, Any]) -> tuple[str, str]:
    what = payload.get("message") or payload.get("kind", "alert")
    subject = f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}Alert: {payload.get('rule_name') or what}"
    lines = [
        what,
        "",
        f"Rule: {payload.get('rule_name') or payload.get('rule_id')}",
        f"Value: {payload.get('value')}",
        f"Tick time (ms since epoch, UTC): {payload.get('tick_ts')}",
        f"Event id: {payload.get('id')}",
        "",
        "You receive this because an alert rule of your organization sends email here.",
    ]
    return subject, "\n".join(lines)


def email_send(delivery: AlertDelivery) -> Outcome:
    subject, text = email_text(delivery.firing.payload)
    try:
        send_mail(subject, text, None, [delivery.target])
    except Exception as exc:  # SMTP failures of every kind are retried
        return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
    return Outcome(ok=True)


def delivery_attempt(delivery: AlertDelivery) -> Outcome:
    if delivery.channel == AlertDelivery.Channel.WEBHOOK:
        return webhook_send(delivery)
    return email_send(delivery)
