"""Forms that behave: a key is created once and shown once, errors sit next to their
field in the words of its label, and backtests start from a range that has data."""

from __future__ import annotations

import re
import secrets

import pytest

from tests.browser.conftest import (
    VIEWPORTS,
    assert_next_to,
    assert_no_sideways_scroll,
    assert_on_screen,
    screenshot,
)
from tests.browser.test_site import _confirmation_link, _sign_up

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _customer(site, new_context, viewport: str = "desktop", *, init_script: str | None = None):
    """A new free-plan customer, signed up, verified and on the dashboard. `init_script`
    runs in each page of theirs before the page's own scripts (to watch it from the start)."""
    email = f"forms-{viewport}-{secrets.token_hex(4)}@example.com"
    context = new_context(viewport)
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    _sign_up(page, email)
    page.goto(_confirmation_link(site, email))
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/"))
    return page


def _refused_before_sending(page, field: str, value: str, *, submit: str, message: str) -> None:
    """An input's own limit, checked in the browser: the message under it, marked invalid."""
    page.fill(field, value)
    page.click(submit)
    assert page.inner_text(f"{field}-error") == message
    assert page.get_attribute(field, "aria-invalid") == "true"
    assert_next_to(page.locator(field), page.locator(f"{field}-error"))


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_reload_after_creating_a_key_creates_no_second_key(site, new_context, viewport):
    page = _customer(site, new_context, viewport)
    page.goto("/keys/")
    page.fill("input[name=name]", "reload me")
    page.click("form[action$='/keys/new/'] button[type=submit]")
    key = page.input_value("#new-api-key")
    assert key.startswith("qs_")
    assert page.url.endswith("/keys/new/")  # redirected: the address shows no POST
    # The one-time display can be read and copied whole, on a phone too.
    assert_on_screen(page, page.locator("#new-api-key"))
    assert_on_screen(page, page.get_by_role("button", name="Copy"))
    assert_no_sideways_scroll(page)
    screenshot(page, f"api-key-created-{viewport}")

    response = page.reload()
    assert response.status == 200  # neither a 403 nor a resubmitted form
    assert key not in page.content()
    assert page.locator("#new-api-key").count() == 0
    assert "shown only once" in page.inner_text("main")
    assert page.locator("main").get_by_text("reload me").count() == 1
    assert_on_screen(page, page.locator("main").get_by_text("reload me"))
    screenshot(page, f"api-key-created-reloaded-{viewport}")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_backtest_errors_sit_next_to_their_field_in_plain_words(site, new_context, viewport):
    page = _customer(site, new_context, viewport)
    page.goto("/backtests/")
    page.wait_for_selector("#bt-market:not([disabled])")
    page.wait_for_function("() => document.querySelector('#bt-days-hint').innerText")

    # The API's own limits are checked before anything is sent.
    _refused_before_sending(
        page, "#bt-fee", "5000", submit="#bt-submit", message="Must be at most 1000."
    )
    assert page.inner_text("#bt-status").startswith("Not started")
    page.fill("#bt-fee", "10")

    # A rule only the API knows: its message under the field, with the label's words.
    page.fill("#bt-fast", "30")
    page.fill("#bt-slow", "10")
    page.click("#bt-submit")
    page.wait_for_selector("#bt-slow-error")
    message = page.inner_text("#bt-slow-error")
    assert message == "The slow window must be greater than the fast window.", message
    assert_next_to(page.locator("#bt-slow"), page.locator("#bt-slow-error"))
    assert "{" not in page.inner_text("main") and "params" not in page.inner_text("main")
    assert page.inner_text("#bt-status").startswith("Not started")
    assert page.locator("#bt-fee-error").count() == 0  # fixed fields lose their message
    screenshot(page, f"backtests-errors-{viewport}")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_backtests_default_to_stored_data_and_warn_of_a_short_sample(site, new_context, viewport):
    page = _customer(site, new_context, viewport)
    page.goto("/backtests/")
    page.wait_for_selector("#bt-market:not([disabled])")
    page.wait_for_function("() => document.querySelector('#bt-days-hint').innerText")
    # The test server stores 40 minutes: one day of 1-minute candles covers it.
    assert "Stored data for this market starts" in page.inner_text("#bt-days-hint")
    assert page.input_value("#bt-days") == "1"
    assert page.input_value("#bt-interval") == "1m"
    assert "too short a sample" in page.inner_text("#bt-warning")
    assert_on_screen(page, page.locator("#bt-warning"))  # said before the run, not after

    page.click("#bt-submit")
    page.wait_for_selector("#backtests[data-state=done]", timeout=60_000)
    assert int(page.get_attribute("#equity-chart", "data-points")) > 10
    assert "short sample" in page.inner_text("#bt-status")
    assert_on_screen(page, page.locator("#bt-warning"))
    assert_on_screen(page, page.locator("#bt-status"))
    assert_no_sideways_scroll(page)
    screenshot(page, f"backtests-short-sample-{viewport}")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_options_errors_sit_next_to_their_field_in_plain_words(site, new_context, viewport):
    page = _customer(site, new_context, viewport)
    page.goto("/options/")
    page.wait_for_function("() => document.querySelector('#options-calculator').dataset.priced")

    # The inputs' own limits are checked before anything is sent.
    submit = "#option-form button[type=submit]"
    _refused_before_sending(
        page, "#opt-volatility", "-0.2", submit=submit, message="Must be at least 0."
    )
    assert page.evaluate("() => document.activeElement.id") == "opt-volatility"
    assert page.inner_text("[data-field=price]") == "\N{EN DASH}"  # no figures of other inputs
    page.fill("#opt-volatility", "0.2")

    # A rule only the API knows (a strike of 0): its message under the strike.
    page.fill("#opt-strike", "0")
    page.click(submit)
    page.wait_for_selector("#opt-strike-error")
    assert page.inner_text("#opt-strike-error") == "Must be greater than 0."
    assert page.get_attribute("#opt-strike", "aria-invalid") == "true"
    assert_next_to(page.locator("#opt-strike"), page.locator("#opt-strike-error"))
    assert page.locator("#opt-volatility-error").count() == 0  # fixed fields lose their message
    main = page.inner_text("main")
    assert "{" not in main and "dividend_yield" not in main and "invalid" not in main.lower()
    assert page.locator("#option-error").is_hidden()  # nothing left over for a general line
    assert page.inner_text("[data-field=price]") == "\N{EN DASH}"
    screenshot(page, f"options-errors-{viewport}")

    page.fill("#opt-strike", "40")
    page.click(submit)
    page.wait_for_function("() => document.querySelector('#options-calculator').dataset.priced")
    assert page.locator("#opt-strike-error").count() == 0
    assert page.get_attribute("#opt-strike", "aria-invalid") is None
    assert float(page.inner_text("[data-field=price]").replace(",", "")) > 0
