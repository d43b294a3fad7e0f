"""The API docs page documents the stream from its AsyncAPI document on the real host and
leads back to the app; and no page logs a console error or has a request fail, signed out
or in, in the light or the dark theme, on a desktop or a phone (the `new_context` fixture
fails a test on any error, CSP refusals included)."""

from __future__ import annotations

import re
import secrets

import pytest
import requests

from tests.browser.conftest import VIEWPORTS, screenshot
from tests.browser.test_site import _confirmation_link, _sign_up

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
    ("checkout-success", "/billing/success/", "main h1"),
    ("checkout-cancel", "/billing/cancel/", "main h1"),
    ("email-addresses", "/accounts/email/", "main form"),
    ("password-change", "/accounts/password/change/", "main form"),
    ("two-factor", "/accounts/2fa/", "main h1"),
    ("docs", "/api/docs/", "text=QuantSaaS API"),
]
# What a visitor sees before signing in (signed in, login and signup send to the app).
PUBLIC_PAGES = [
    ("landing", "/", "#preview-chart canvas"),
    ("login", "/accounts/login/", "main form"),
    ("signup", "/accounts/signup/", "main form"),
    ("password-reset", "/accounts/password/reset/", "main form"),
    ("verification-resend", "/accounts/verification/resend/", "main form"),
    ("pricing", "/pricing/", "#plan-comparison"),
    ("docs", "/api/docs/", "text=QuantSaaS API"),
]
# Pictures of each theme at each size, for people to look at.
SCREENSHOTS = {"landing", "dashboard", "pricing"}
# Pages that keep drawing after they load (charts, the stream, Redoc): a late error shows
# within half a second. The others have run all their scripts by the load event.
LIVE = {"landing", "dashboard", "options", "backtests", "usage", "docs"}


@pytest.fixture(scope="module")
def customer_state(site, browser) -> dict:
    """One signed-in free-plan customer for the sweeps of this module (cookies and storage):
    signing up once instead of once per theme and size keeps the sweep quick."""
    context = browser.new_context(base_url=site.url)
    try:
        context.set_default_timeout(20_000)
        page = context.new_page()
        email = f"themes-{secrets.token_hex(4)}@example.com"
        _sign_up(page, email)
        page.goto(_confirmation_link(site, email))
        page.click("form button[type=submit]")
        page.wait_for_url(re.compile(r"/dashboard/"))
        page.goto("/pricing/")  # leave the dashboard: its socket is the plan's only one
        return context.storage_state()
    finally:
        context.close()


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


def _visit_in_theme(page, pages, theme: str, viewport: str, watch) -> None:
    page.evaluate("theme => window.localStorage.setItem('qs-theme', theme)", theme)
    for name, path, ready in pages:
        page.goto(path)
        page.wait_for_selector(ready, timeout=30_000)
        if name != "docs":
            assert page.get_attribute("html", "data-theme") == theme, name
        page.wait_for_timeout(500 if name in LIVE else 100)
        assert not watch.errors, f"{name} ({path}), {theme} theme, {viewport}:\n" + "\n".join(
            watch.errors
        )
        if name in SCREENSHOTS:
            screenshot(page, f"{name}-{theme}-{viewport}")


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_no_page_logs_a_console_error_in_either_theme(new_context, customer_state, viewport, theme):
    """Every page, signed out and signed in: no console error, no uncaught exception, no
    request without an answer, no page or static file that fails (see ConsoleWatch)."""
    visitor = new_context(viewport).new_page()
    visitor.goto("/")
    _visit_in_theme(visitor, PUBLIC_PAGES, theme, viewport, new_context.watch)

    page = new_context(viewport, storage_state=customer_state).new_page()
    page.goto("/pricing/")
    _visit_in_theme(page, PAGES, theme, viewport, new_context.watch)
