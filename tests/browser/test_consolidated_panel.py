"""The dashboard's consolidated panel in a browser (issue 12): a customer on a real-time
plan sees the venues quoting BTC-USD, the best bid below the best ask with the venue of
each, and the best venue change within seconds of a venue's price moving.

Real daphne and the real feed runner against the fake Coinbase, Kraken and Binance (the
setup of tests/e2e/test_consolidated.py), PostgreSQL and Redis, Debian's Chromium.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    VIEWPORTS,
    ConsoleWatch,
    _playwright,
    screenshot,
)
from tests.browser.test_site import _log_in
from tests.e2e.stream_servers import WebProcess, running
from tests.e2e.test_consolidated import all_feeds, instruments, venues  # noqa: F401
from tests.streaming.conftest import plan_grant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(150)]

# "64,000.50 coinbase": the panel's price, then the venue quoting it.
SIDE = re.compile(r"^(?P<price>[\d,]+(?:\.\d+)?)\s+(?P<venue>\w+)$")


def _side(page, which: str) -> tuple[float, str]:
    text = page.inner_text(f"#consolidated-{which}").strip()
    match = SIDE.match(text)
    assert match, f"best {which} reads {text!r}"
    return float(match["price"].replace(",", "")), match["venue"]


def _wait_side(page, which: str, price: float, venue: str, *, seconds: float) -> None:
    """Wait until the panel's best `which` side reads `price` at `venue`."""
    try:
        page.wait_for_function(
            """([id, price, venue]) => {
                const [shown, named] = document.getElementById(id).textContent.trim().split(/\\s+/);
                return parseFloat(shown.replaceAll(",", "")) === price && named === venue;
            }""",
            arg=[f"consolidated-{which}", price, venue],
            timeout=seconds * 1000,
        )
    except Exception as exc:
        shown = page.inner_text(f"#consolidated-{which}")
        raise AssertionError(f"best {which} still {shown!r} after {seconds} s") from exc


@pytest.fixture
def web(venues, acme, tmp_path):  # noqa: F811
    """daphne and every feed shard, BTC-USD on Coinbase and Kraken, `acme` on a real-time plan."""
    instruments()
    plan_grant(acme, code="live", ws_connections=20)
    web = WebProcess(logs=tmp_path)
    with running(web, all_feeds(venues, tmp_path, CONSOLIDATED_STALE_SECONDS="30")):
        yield web


def test_the_panel_names_the_best_venue_and_follows_a_price_move(web, venues, alice):  # noqa: F811
    coinbase, kraken = venues["coinbase"], venues["kraken"]
    watch = ConsoleWatch(web.http)
    with _playwright()() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page(viewport=VIEWPORTS["desktop"], base_url=web.http)
            watch.attach(page)
            _log_in(page, alice.email)

            venues_line = page.locator("#consolidated-venues")
            page.wait_for_function(
                "() => document.getElementById('consolidated-venues').textContent"
                " === 'Venues: coinbase, kraken'",
                timeout=60_000,
            )
            assert "binance" not in venues_line.inner_text()  # BTC-USDT is a pair of its own
            bid, bid_venue = _side(page, "bid")
            ask, ask_venue = _side(page, "ask")
            assert bid < ask
            assert {bid_venue, ask_venue} <= {"coinbase", "kraken"}
            assert page.locator("#consolidated-bids tr").count() > 0
            assert page.locator("#consolidated-asks tr").count() > 0
            assert page.locator("#consolidated-empty").is_hidden()

            # Coinbase outbids everyone, then Kraken offers lowest: each best side changes
            # venue within a few seconds (the panel polls every 2 s).
            coinbase.fake.emit_levels("BTC-USD", [("bids", "64000.50", "0.70000000")])
            _wait_side(page, "bid", 64000.5, "coinbase", seconds=8)
            kraken.fake.emit_levels("BTC/USD", [("asks", "64000.8", "1.50000000")])
            _wait_side(page, "ask", 64000.8, "kraken", seconds=8)
            assert _side(page, "bid") == (64000.5, "coinbase")
            best = page.locator("#consolidated-asks tr[aria-current=true]")
            assert "kraken" in best.inner_text()
            screenshot(page, "consolidated-panel-desktop")

            page.set_viewport_size(VIEWPORTS["phone"])
            page.locator("#consolidated").scroll_into_view_if_needed()
            assert page.locator("#consolidated").is_visible()
            screenshot(page, "consolidated-panel-phone")
        finally:
            browser.close()
    assert not watch.errors, "\n".join(watch.errors)
