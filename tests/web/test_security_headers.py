"""Content-Security-Policy: only our own assets, the stream socket, never framed."""

from __future__ import annotations

import pytest
from django.urls import reverse

from quantsaas.security import content_security_policy

pytestmark = pytest.mark.django_db


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in header.split("; ")}


@pytest.mark.parametrize("path", ["/", "/pricing/", "/accounts/login/"])
def test_public_pages_allow_only_our_own_scripts_and_styles(client, path):
    policy = _policy(client.get(path))

    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]


def test_the_dashboard_may_open_the_stream_socket_on_its_own_host(alice_client):
    response = alice_client.get(reverse("dashboard"), HTTP_HOST="localhost")

    assert _policy(response)["connect-src"] == ["'self'", "ws://localhost", "wss://localhost"]


def test_api_answers_carry_the_policy_too(alice_client):
    response = alice_client.get("/api/v1/exchanges")

    assert response.status_code == 200
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


def test_a_refused_host_cannot_write_into_the_policy(client):
    response = client.get("/", HTTP_HOST="evil.test; script-src *")

    assert response.status_code == 400
    assert "evil" not in response["Content-Security-Policy"]


def test_api_docs_get_inline_styles_and_a_blob_worker_but_no_inline_script(client):
    response = client.get(reverse("api-docs"))

    assert response.status_code == 200
    policy = _policy(response)
    assert policy["script-src"] == ["'self'"]
    assert "'unsafe-inline'" in policy["style-src"]
    assert "blob:" in policy["worker-src"]
    body = response.content.decode()
    assert "<script>" not in body and "fonts.googleapis" not in body
    assert "/static/drf_spectacular_sidecar/redoc/" in body


def test_forms_may_go_to_stripe_checkout_and_a_configured_stand_in(settings):
    settings.STRIPE_API_BASE = "http://127.0.0.1:4567"

    policy = content_security_policy(host="example.com")

    assert "form-action 'self' https://checkout.stripe.com https://billing.stripe.com" in policy
    assert "http://127.0.0.1:4567" in policy


def test_frames_are_refused_by_the_legacy_header_as_well(client):
    assert client.get("/")["X-Frame-Options"] == "DENY"
