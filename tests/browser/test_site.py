"""What a customer does in the browser, end to end, against `manage.py serve`.

Every test also fails on any JavaScript error in the console of our pages (the
`new_context` fixture), which includes scripts or styles the CSP refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time

import pytest
import requests

from tests.browser.conftest import PRICE_PRO, VIEWPORTS, WEBHOOK_SECRET, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PASSWORD = "correct-horse-battery-staple-42"
CONFIRM_LINK = re.compile(r"(http://\S+/accounts/confirm-email/\S+/)")


def _sign_up(page, email: str) -> None:
    page.goto("/accounts/signup/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_load_state()


def _confirmation_link(site, email: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in site.emails():
            if email in message:
                match = CONFIRM_LINK.search(message)
                if match:
                    return match.group(1)
        time.sleep(0.2)
    raise AssertionError(f"no verification email for {email}: {site.emails()}")


def _log_in(page, email: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/"))


def _wait_connected(page, timeout: float = 30_000) -> None:
    try:
        page.wait_for_selector("#stream-status[data-state=connected]", timeout=timeout)
    except Exception as exc:
        status = page.inner_text("#stream-status")
        problem = page.inner_text("#dashboard-error")
        raise AssertionError(f"stream not connected: {status!r} {problem!r}") from exc


def _deliver_webhook(site, event_type: str, obj: dict) -> None:
    """Stripe tells our server what happened, signed with the endpoint secret."""
    event = {
        "id": f"evt_browser_{secrets.token_hex(6)}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "livemode": False,
        "type": event_type,
        "data": {"object": obj},
    }
    body = json.dumps(event).encode()
    stamp = int(time.time())
    digest = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    response = requests.post(
        f"{site.url}billing/stripe/webhook/",
        data=body,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": f"t={stamp},v1={digest.hexdigest()}",
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_a_new_customer_signs_up_sees_live_candles_uses_a_key_and_upgrades(site, new_context):
    email = f"trader-{secrets.token_hex(4)}@example.com"
    page = new_context().new_page()

    # Sign up, then read the verification email the server wrote to its outbox.
    _sign_up(page, email)
    assert "verify" in page.content().lower() or "confirm" in page.content().lower()
    page.goto(_confirmation_link(site, email))
    page.click("form button[type=submit]")
    page.wait_for_load_state()
    # Confirming signed the user in and opened the dashboard, whose socket holds the free
    # plan's one stream connection; closing the tab frees it.
    page.close()

    # Log in from a fresh browser, as someone returning later would.
    page = new_context().new_page()
    _log_in(page, email)

    # Free plan: the dashboard says the stream is delayed, and the socket is up.
    _wait_connected(page)
    assert page.locator("#delay-badge").is_visible()
    assert re.search(r"Delayed 15 min · as of \d\d:\d\d:\d\d", page.inner_text("#delay-badge"))
    page.wait_for_selector("#instrument-picker:not([disabled])")
    assert "sim:BTC-USD" in page.eval_on_selector_all(
        "#instrument-picker option", "options => options.map(o => o.value)"
    )

    # An API key, created once and shown once, works against the REST API.
    page.goto("/keys/")
    page.fill("input[name=name]", "browser test")
    page.click("form[action$='/keys/new/'] button[type=submit]")
    key = page.input_value("#new-api-key")
    assert key.startswith("qs_")
    candles_url = f"{site.url}api/v1/markets/sim/BTC-USD/candles?interval=1m&limit=5"
    auth = {"Authorization": f"Bearer {key}"}
    candles = requests.get(candles_url, headers=auth, timeout=10)
    assert candles.status_code == 200, candles.text
    # The free plan is delayed over REST too: the answer says so and holds nothing newer.
    assert candles.headers["X-Data-Delay"] == "900"

    # Upgrade: the billing page sends the browser to (fake) Stripe Checkout ...
    page.goto("/billing/")
    with page.expect_navigation(url=re.compile(re.escape(site.stripe.base) + r"/pay/cs_")):
        page.click("form[action$='/billing/checkout/'] button[type=submit]")
    session_id = page.url.rsplit("/", 1)[-1]
    # ... the customer pays there, and Stripe's webhook tells our server.
    session = site.stripe.checkout_complete(session_id)
    assert session["line_items"][0]["price"] == PRICE_PRO
    _deliver_webhook(site, "checkout.session.completed", session)

    page.goto("/billing/")
    assert page.get_attribute("[data-plan]", "data-plan") == "pro"
    candles = requests.get(candles_url, headers=auth, timeout=10)
    assert "X-Data-Delay" not in candles.headers
    assert candles.json()["data"], "real time: the running feed's candles are served"

    # Real time now: the chart keeps receiving candles from the running feed.
    page.goto("/dashboard/?market=sim:BTC-USD")
    _wait_connected(page)
    limits = page.evaluate("() => window.QSDashboard.stream.limits")
    assert page.locator("#delay-badge").is_hidden(), (limits, page.inner_text(".page-header"))
    page.wait_for_function(
        "() => Number(document.querySelector('#price-chart').dataset.candles) >= 3",
        timeout=30_000,
    )
    page.wait_for_selector("#trade-tape tr")
    page.wait_for_selector("#book-bids tr")
    assert page.locator("#price-chart canvas").count() > 0
    assert re.search(r"lag \d", page.inner_text("#stream-lag"))
    screenshot(page, "dashboard-live-desktop")


def test_the_dashboard_survives_a_dropped_socket_and_refills(site, new_context):
    email = f"dropper-{secrets.token_hex(4)}@example.com"
    page = new_context().new_page()
    _sign_up(page, email)
    page.goto(_confirmation_link(site, email))
    page.click("form button[type=submit]")
    page.wait_for_load_state()
    page.goto("/dashboard/")  # confirming the email signed the user in
    _wait_connected(page)

    page.evaluate("() => window.QSDashboard.stream.socket.close(4000, 'test drop')")
    page.wait_for_selector("#stream-status[data-state=reconnecting]")
    _wait_connected(page)
    subscribed = page.evaluate("() => Object.keys(window.QSDashboard.stream.subscribed)")
    assert "candles_1m.sim.BTC-USD" in subscribed
    assert "trades.sim.BTC-USD" in subscribed


def test_landing_shows_a_live_chart_of_the_simulated_market(site, new_context):
    page = new_context().new_page()
    page.goto("/")
    page.wait_for_selector("#preview-chart canvas")
    page.wait_for_function(
        "() => Number(document.querySelector('#preview-chart').dataset.points) > 0",
        timeout=20_000,
    )
    assert page.inner_text("#preview-last") != "\N{EN DASH}"  # the placeholder


def test_api_docs_render_under_the_content_security_policy(site, new_context):
    page = new_context().new_page()
    response = page.goto("/api/docs/")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.wait_for_selector("text=QuantSaaS API", timeout=30_000)


def test_options_calculator_prices_and_draws_a_smile(site, new_context):
    email = f"quant-{secrets.token_hex(4)}@example.com"
    page = new_context().new_page()
    _sign_up(page, email)
    page.goto(_confirmation_link(site, email))
    page.click("form button[type=submit]")
    page.goto("/options/")
    price = page.locator("[data-field=price]")
    page.wait_for_function("() => document.querySelector('#options-calculator').dataset.priced")
    assert float(price.inner_text().replace(",", "")) > 0
    page.wait_for_function(
        "() => Number(document.querySelector('#smile-chart').dataset.points) > 5"
    )


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_screenshots_of_the_main_pages(site, new_context, viewport):
    """Not an assertion of looks: pictures in var/screenshots/ for people to check."""
    public = new_context(viewport).new_page()
    for name, path in [("landing", "/"), ("pricing", "/pricing/"), ("login", "/accounts/login/")]:
        public.goto(path)
        public.wait_for_load_state("networkidle")
        screenshot(public, f"{name}-{viewport}")

    email = f"shots-{viewport}-{secrets.token_hex(3)}@example.com"
    page = new_context(viewport).new_page()
    _sign_up(page, email)
    page.goto(_confirmation_link(site, email))
    page.click("form button[type=submit]")
    page.wait_for_load_state()
    for name, path, ready in [
        ("dashboard", "/dashboard/", "#stream-status[data-state=connected]"),
        ("options", "/options/", "#option-form"),
        ("backtests", "/backtests/", "#bt-market:not([disabled])"),
        ("api-keys", "/keys/", "main"),
        ("billing", "/billing/", "main"),
        ("usage", "/billing/usage/", "#usage-chart canvas"),
    ]:
        page.goto(path)
        page.wait_for_selector(ready)
        page.wait_for_timeout(1500)  # let charts draw and the stream deliver a little
        screenshot(page, f"{name}-{viewport}")
