"""The API docs page documents the stream from its AsyncAPI document on the real host and
leads back to the app; and no page logs a console error, in the light or the dark theme
(the `new_context` fixture fails a test on any error, CSP refusals included)."""

from __future__ import annotations

import pytest
import requests

from tests.browser.conftest import VIEWPORTS, screenshot
from tests.browser.test_forms import _customer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PAGES = [
    ("dashboard", "/dashboard/", "#stream-status[data-state=connected]"),
    ("options", "/options/", "#option-form"),
    ("backtests", "/backtests/", "#bt-market:not([disabled])"),
    ("api-keys", "/keys/", "main"),
    ("team", "/team/", "main"),
    ("billing", "/billing/", "main"),
    ("usage", "/billing/usage/", "#usage-chart canvas"),
    ("pricing", "/pricing/", "#plan-comparison"),
    ("alerts", "/alerts/", "main h1"),
    ("new-organization", "/orgs/new/", "main form"),
    ("upgrade-request", "/billing/upgrade-request/?plan=pro", "main form"),
    ("docs", "/api/docs/", "text=QuantSaaS API"),
]
# What a visitor sees before signing in (signed in, login and signup send to the app).
PUBLIC_PAGES = [
    ("landing", "/", "#preview-chart canvas"),
    ("login", "/accounts/login/", "main form"),
    ("signup", "/accounts/signup/", "main form"),
]


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_docs_page_renders_the_stream_contract_on_the_real_host(site, new_context, viewport):
    page = new_context(viewport).new_page()
    page.goto("/api/docs/")
    page.wait_for_selector("text=QuantSaaS API", timeout=30_000)
    origin = site.url.rstrip("/")
    stream_url = "ws://" + origin.split("://", 1)[1] + "/ws/v1/stream"
    assert page.inner_text("#stream-url") == stream_url
    assert page.locator("#stream-server-messages").get_by_text("heartbeat", exact=True).is_visible()
    document = requests.get(f"{origin}/api/v1/asyncapi.json", timeout=10).json()
    assert document["servers"]["quantsaas"]["host"] == origin.split("://", 1)[1]
    screenshot(page, f"api-docs-stream-{viewport}")
    page.get_by_role("link", name="← QuantSaaS").click()
    page.wait_for_url(site.url)


def _visit_in_theme(page, pages, theme: str) -> None:
    page.evaluate("theme => window.localStorage.setItem('qs-theme', theme)", theme)
    for name, path, ready in pages:
        page.goto(path)
        page.wait_for_selector(ready, timeout=30_000)
        if name != "docs":
            assert page.get_attribute("html", "data-theme") == theme, name
        page.wait_for_timeout(500)  # late errors: charts drawing, the stream's first frames


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_no_page_logs_a_console_error_in_either_theme(site, new_context, theme):
    visitor = new_context().new_page()
    visitor.goto("/")
    _visit_in_theme(visitor, PUBLIC_PAGES, theme)
    visitor.goto("/")
    visitor.wait_for_selector("#preview-chart canvas")
    screenshot(visitor, f"landing-{theme}-desktop")

    page = _customer(site, new_context)
    _visit_in_theme(page, PAGES, theme)
    screenshot(page, f"docs-{theme}-desktop")
