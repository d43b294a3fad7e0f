"""Site-wide pages: landing, dashboard access, error pages, and the shared header."""

from __future__ import annotations

import pytest
from django.template.loader import render_to_string
from django.test import RequestFactory
from django.urls import reverse
from django.utils.html import escape

from quantsaas.api.errors import server_error
from tests.conftest import client_for
from tests.factories import OrganizationFactory

SITE_HEADER = 'class="site-header"'

pytestmark = pytest.mark.django_db


def test_landing_pitches_the_product_and_invites_signup(client):
    response = client.get(reverse("landing"))

    assert response.status_code == 200
    body = response.content.decode()
    assert SITE_HEADER in body
    for topic in ("market data", "analytics", "REST API", "WebSocket"):
        assert topic in body
    assert f'href="{reverse("account_signup")}"' in body
    assert f'href="{reverse("api-docs")}"' in body
    assert 'class="app-nav"' not in body  # no application menu for visitors


def test_page_assets_are_our_own_with_no_inline_script_or_style(client):
    body = client.get(reverse("landing")).content.decode()

    assert "/static/css/site.css" in body
    assert "/static/js/site.js" in body
    assert "<script>" not in body  # a strict CSP will forbid inline scripts
    assert "style=" not in body
    assert "//cdn" not in body


def test_stylesheet_and_script_are_served(client):
    assert client.get("/static/css/site.css").status_code == 200
    assert client.get("/static/js/site.js").status_code == 200


def test_dashboard_requires_login(client):
    response = client.get(reverse("dashboard"))

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('account_login')}?next={reverse('dashboard')}"


def test_dashboard_shows_the_current_organization_and_role(alice, acme):
    response = client_for(alice, acme).get(reverse("dashboard"))

    assert response.status_code == 200
    body = response.content.decode()
    assert escape(acme.name) in body
    assert "Owner" in body
    assert f'href="{reverse("api_keys")}"' in body
    assert f'href="{reverse("team")}"' in body
    assert 'id="price-chart"' in body


def test_signed_in_header_shows_email_switcher_and_a_post_logout(alice, acme, bob):
    other = OrganizationFactory(name="Alice Research", owner=alice)

    body = client_for(alice, acme).get(reverse("dashboard")).content.decode()

    assert "alice@acme.test" in body
    assert f'action="{reverse("organization_switch")}"' in body
    assert f'<option value="{acme.pk}" title="Acme Capital" selected>Acme Capital<' in body
    assert f'<option value="{other.pk}" title="Alice Research">' in body
    assert f'href="{reverse("organization_create")}"' in body
    assert f'action="{reverse("account_logout")}"' in body
    assert 'class="app-nav"' in body


def test_switcher_lists_only_the_users_own_organizations(mallory, globex, acme):
    body = client_for(mallory, globex).get(reverse("dashboard")).content.decode()

    assert escape(globex.name) in body
    assert escape(acme.name) not in body


def test_unknown_page_gets_the_site_404(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    body = response.content.decode()
    assert SITE_HEADER in body
    assert "Page not found" in body


def test_unknown_api_path_still_answers_json(client):
    response = client.get("/api/v1/no-such-endpoint")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_500_page_renders_without_request_context_or_database(django_assert_num_queries):
    request = RequestFactory().get("/boom/")

    with django_assert_num_queries(0):
        response = server_error(request)
        html = render_to_string("500.html")

    assert response.status_code == 500
    assert "Something went wrong on our side" in response.content.decode()
    assert SITE_HEADER in html
