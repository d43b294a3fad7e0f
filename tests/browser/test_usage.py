"""Usage that adds up: the stream messages the dashboard received are counted and shown,
today's totals are not held against a per-minute limit, and the chart is readable with
one day of data."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import assert_no_sideways_scroll, assert_on_screen, screenshot
from tests.browser.test_forms import _customer
from tests.browser.test_site import _deliver_webhook, _wait_connected

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _upgrade_to_pro(site, page) -> None:
    page.goto("/billing/")
    with page.expect_navigation(url=re.compile(re.escape(site.stripe.base) + r"/pay/cs_")):
        page.click("form[action$='/billing/checkout/'] button[type=submit]")
    session = site.stripe.checkout_complete(page.url.rsplit("/", 1)[-1])
    _deliver_webhook(site, "checkout.session.completed", session)


def test_stream_messages_the_dashboard_received_are_counted_on_the_usage_page(site, new_context):
    page = _customer(site, new_context)
    _upgrade_to_pro(site, page)
    page.goto("/dashboard/?market=sim:BTC-USD")
    _wait_connected(page)
    page.wait_for_selector("#trade-tape tr")
    page.wait_for_function(
        "() => Number(document.querySelector('#price-chart').dataset.candles) >= 1",
        timeout=30_000,
    )
    page.wait_for_timeout(6_000)  # the stream adds its deliveries to usage every 5 s
    page.goto("/billing/usage/")
    _usage_adds_up(page, "desktop")

    # The same customer's usage on a phone (a second window of theirs, signed in).
    phone = new_context("phone", storage_state=page.context.storage_state()).new_page()
    phone.goto("/billing/usage/")
    _usage_adds_up(phone, "phone")


def _usage_adds_up(page, viewport: str) -> None:
    delivered = page.locator("#usage-stream-today")
    assert int(delivered.inner_text().replace(",", "")) > 0, "stream messages are counted"
    assert_on_screen(page, delivered)
    main = page.inner_text("main")
    assert "limit" not in page.inner_text("#usage-api-today").lower()
    assert "per minute)" not in main  # a day's total is not compared with a minute's limit
    chart = page.locator("#usage-chart")
    chart.locator("canvas").first.wait_for()
    assert int(chart.get_attribute("data-points")) == 1
    assert int(chart.get_attribute("data-days")) >= 14  # one day is one bar among days
    assert_on_screen(page, chart)
    assert_no_sideways_scroll(page)
    screenshot(page, f"usage-one-day-{viewport}")
