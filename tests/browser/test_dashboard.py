"""The markets dashboard tells the truth: delayed data says so and still moves, a market
without a feed is empty and says why, and the chart switches intervals."""

from __future__ import annotations

import re
import time

import pytest

from tests.browser.conftest import VIEWPORTS, screenshot
from tests.browser.test_forms import _customer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PLACEHOLDER = "\N{EN DASH}"  # what an empty quote shows
DELAY_BADGE = re.compile(r"^Delayed 15 min · as of (\d\d:\d\d:\d\d) UTC$")


def _free_customer_on_dashboard(site, new_context, viewport: str = "desktop"):
    return _customer(site, new_context, viewport)


def _newest_trade(page) -> str:
    return page.evaluate(
        "() => { const row = document.querySelector('#trade-tape tr');"
        " return row ? row.innerText : ''; }"
    )


def _wait_tape_moves(page, *, opened: float, within: float = 5) -> None:
    """The tape gets a newer trade within `within` seconds of `opened` (monotonic)."""
    page.wait_for_selector("#trade-tape tr", timeout=within * 1000)
    first = _newest_trade(page)
    page.wait_for_function(
        "first => { const r = document.querySelector('#trade-tape tr');"
        " return r && r.innerText !== first; }",
        arg=first,
        timeout=max(1_000, int((opened + within - time.monotonic()) * 1000) + 3_000),
    )


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_free_plan_dashboard_moves_within_5_s_under_a_delayed_badge(site, new_context, viewport):
    page = _free_customer_on_dashboard(site, new_context, viewport)
    opened = time.monotonic()

    badge = page.locator("#delay-badge")
    badge.wait_for(state="visible", timeout=5_000)
    match = DELAY_BADGE.match(badge.inner_text())
    assert match, badge.inner_text()
    # The badge says when the data is from: about 15 minutes ago, and the clock runs.
    shown = match.group(1)
    expected = time.strftime("%H:%M:%S", time.gmtime(time.time() - 900))
    assert abs(_seconds(shown) - _seconds(expected)) <= 5, (shown, expected)
    page.wait_for_function(
        "shown => !document.querySelector('#delay-badge').innerText.includes(shown)",
        arg=shown,
        timeout=3_000,
    )
    # Never a green "Live" on a delayed plan.
    assert page.inner_text("#stream-status") != "Live"

    # The data moves from the first seconds: the tape gets a newer trade.
    _wait_tape_moves(page, opened=opened)
    # Last, bid and ask are there, and the last price is the chart's last close.
    page.wait_for_function(
        "empty => !['', empty].includes(document.querySelector('#quote-bid').innerText)",
        arg=PLACEHOLDER,
        timeout=15_000,
    )
    assert page.inner_text("#quote-ask") != PLACEHOLDER
    consistent = page.evaluate(
        "() => { const c = document.querySelector('#chart-legend').innerText.match(/C (\\S+)/);"
        " return [c && c[1], document.querySelector('#quote-last').innerText]; }"
    )
    assert consistent[0] == consistent[1], consistent
    # The trades shown are 15 minutes old, not real time.
    newest = _newest_trade(page).split()[0]
    assert abs(_seconds(newest) - _seconds(time.strftime("%H:%M:%S", time.gmtime()))) > 800
    screenshot(page, f"dashboard-delayed-{viewport}")


def test_the_chart_switches_between_intervals(site, new_context):
    page = _free_customer_on_dashboard(site, new_context)
    page.wait_for_selector("#trade-tape tr")
    picker = page.get_by_role("group", name="Candle interval")
    assert [b.strip() for b in picker.locator("button").all_inner_texts()] == [
        "1m",
        "5m",
        "15m",
        "1h",
        "4h",
        "1d",
    ]
    for name, words in [("5m", "5-minute"), ("1h", "1-hour"), ("1d", "daily"), ("1m", "1-minute")]:
        picker.get_by_role("button", name=name, exact=True).click()
        page.wait_for_function(
            "words => document.querySelector('#chart-title').innerText.includes(words)", arg=words
        )
        pressed = picker.get_by_role("button", name=name, exact=True).get_attribute("aria-pressed")
        assert pressed == "true"
        page.wait_for_function(
            "() => /C \\d/.test(document.querySelector('#chart-legend').innerText)"
        )
        if name == "1h":
            screenshot(page, "dashboard-interval-1h-desktop")
    # The choice is remembered for the next visit.
    page.goto("/dashboard/")
    assert page.get_by_role("button", name="1m", exact=True).get_attribute("aria-pressed") == "true"


def test_a_market_without_a_feed_clears_every_panel_and_says_why(site, new_context):
    page = _free_customer_on_dashboard(site, new_context)
    page.wait_for_selector("#trade-tape tr")
    page.wait_for_selector("#instrument-picker:not([disabled])")
    exchanges = page.evaluate("() => window.QSDashboard.state.exchanges")
    down = [x for x in exchanges if not (x.get("status") or {}).get("connected")]
    # The test site runs only the sim feed: the other exchanges' feeds are down.
    assert down, exchanges
    exchange = down[0]
    values = page.eval_on_selector_all(
        "#instrument-picker option", "options => options.map(o => o.value)"
    )
    target = next(v for v in values if v.startswith(exchange["id"] + ":"))
    page.select_option("#instrument-picker", target)

    reason = f"{exchange['name']} feed not connected"
    page.wait_for_selector("#feed-notice:not([hidden])")
    assert reason in page.inner_text("#feed-notice")
    page.wait_for_function(
        "() => document.querySelector('#price-chart').dataset.candles === '0'"
        " && !document.querySelector('#trade-tape tr')"
    )
    assert page.inner_text("#tape-empty") == reason
    assert page.inner_text("#book-empty") == reason
    for quote in ["#quote-last", "#quote-bid", "#quote-ask"]:
        assert page.inner_text(quote) == PLACEHOLDER, quote
    assert page.locator("#book-bids tr").count() == 0
    assert page.inner_text("#ofi-last") == "" and page.inner_text("#vpin-last") == ""
    screenshot(page, "dashboard-feed-down-desktop")


def test_the_vpin_panel_shows_its_progress_toward_the_first_value(site, new_context):
    """A fresh market has no VPIN yet: the panel says how far the buckets are, not "no data"."""
    page = _free_customer_on_dashboard(site, new_context)
    page.wait_for_selector("#vpin-note:not([hidden])")
    note = page.inner_text("#vpin-note")
    assert "does not include analytics" not in note  # the seeded free plan includes them
    assert re.search(r"Filling (the first volume bucket|volume buckets: \d+ of \d+)", note), note
    progress = page.locator("#vpin-progress")
    assert progress.is_visible()
    assert int(progress.get_attribute("max")) >= 1


def _seconds(clock: str) -> int:
    h, m, s = (int(part) for part in clock.split(":"))
    return h * 3600 + m * 60 + s
