"""One navigation on the market pages: each page is linked once, in one navigation that is
a sidebar on a desktop and a strip on a phone (never a sidebar plus an identical tab
strip), the page being read is marked, and the links take the customer there."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import VIEWPORTS, screenshot
from tests.browser.test_forms import _customer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# The market and analytics pages of the app shell: address, link text, the page's heading.
MARKET_PAGES = [
    ("/dashboard/", "Dashboard", "Markets"),
    ("/options/", "Options calculator", "Options calculator"),
    ("/backtests/", "Backtests", "Backtests"),
    ("/alerts/", "Alerts", "Alerts"),
]

# Every link shown inside a navigation landmark that a person can see, by address.
VISIBLE_NAV_LINKS = """() => {
  // checkVisibility: not inside a closed <details> (the phone's account menu) either.
  const shown = (el) => el.checkVisibility({ visibilityProperty: true })
    && el.getBoundingClientRect().width > 0;
  const links = [...document.querySelectorAll("nav a[href], [role=navigation] a[href]")];
  return links.filter(shown).map((a) => [
    new URL(a.href).pathname,
    a.closest("nav, [role=navigation]").getAttribute("aria-label") || "(unnamed)",
  ]);
}"""

VISIBLE_NAVS = """() => [...document.querySelectorAll("nav, [role=navigation], [role=tablist]")]
  .filter((el) => el.checkVisibility({ visibilityProperty: true }))
  .map((el) => el.getAttribute("aria-label") || el.getAttribute("role") || el.tagName)"""


def _visible_nav_links(page) -> dict[str, list[str]]:
    """Address -> the navigations (by their label) that show a link to it."""
    found: dict[str, list[str]] = {}
    for path, nav in page.evaluate(VISIBLE_NAV_LINKS):
        found.setdefault(path, []).append(nav)
    return found


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_each_market_page_is_linked_once_in_one_navigation(site, new_context, viewport):
    page = _customer(site, new_context, viewport)
    for path, label, heading in MARKET_PAGES:
        page.goto(path)
        page.wait_for_load_state()
        assert page.locator("h1").first.inner_text() == heading, path

        # One navigation holds the pages: no second strip, sidebar or tab list.
        navs = page.evaluate(VISIBLE_NAVS)
        assert navs.count("Application") == 1, (path, navs)
        assert "tablist" not in navs, (path, navs)
        links = _visible_nav_links(page)
        for target, _, _ in MARKET_PAGES:
            assert links.get(target) == ["Application"], (path, target, links)
        twice = {target: where for target, where in links.items() if len(where) > 1}
        assert not twice, f"{path}: linked more than once in the navigation: {twice}"

        # The page being read is marked, once, and looks it.
        current = page.locator("nav [aria-current=page]")
        assert current.count() == 1, path
        assert current.inner_text() == label and current.get_attribute("href") == path
        assert current.is_visible()  # on a phone, scrolled into view in the strip
        other = page.locator(".app-nav a:not([aria-current])").first
        style = "el => [getComputedStyle(el).fontWeight, getComputedStyle(el).backgroundColor]"
        assert current.evaluate(style) != other.evaluate(style), path
        screenshot(page, f"navigation-{path.strip('/')}-{viewport}")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_navigation_goes_from_market_page_to_market_page(site, new_context, viewport):
    page = _customer(site, new_context, viewport)
    nav = page.get_by_role("navigation", name="Application")
    # Round the pages and back to the start, by the links alone.
    for path, label, heading in [*MARKET_PAGES[1:], MARKET_PAGES[0]]:
        nav.get_by_role("link", name=label, exact=True).click()
        page.wait_for_url(re.compile(re.escape(path) + "$"))
        assert page.locator("h1").first.inner_text() == heading
        assert nav.locator("[aria-current=page]").inner_text() == label
