"""The site's shell in a real browser: the header fits a phone, the account menu works
from the keyboard, and the desktop header keeps everything in view."""

from __future__ import annotations

import secrets

import pytest

from tests.browser.conftest import VIEWPORTS, screenshot
from tests.browser.test_site import _confirmation_link, _sign_up

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PAGES = [
    "/dashboard/",
    "/options/",
    "/backtests/",
    "/keys/",
    "/team/",
    "/billing/",
    "/billing/usage/",
]


def _signed_in_page(site, new_context, viewport: str):
    # The personal organization is named after the (long) email: a realistic worst case
    # for the width of the organization switcher.
    email = f"shell-{viewport}-{secrets.token_hex(6)}@example.com"
    page = new_context(viewport).new_page()
    _sign_up(page, email)
    page.goto(_confirmation_link(site, email))
    page.click("form button[type=submit]")
    page.wait_for_load_state()
    return page


def _page_width(page) -> int:
    return page.evaluate("() => document.documentElement.scrollWidth")


def test_the_header_fits_a_phone_screen_on_every_page(site, new_context):
    page = _signed_in_page(site, new_context, "phone")
    width = VIEWPORTS["phone"]["width"]
    for path in PAGES:
        page.goto(path)
        page.wait_for_load_state()
        inner = page.evaluate(
            "() => { const el = document.querySelector('.site-header-inner');"
            " return [el.scrollWidth, el.clientWidth, el.getBoundingClientRect().right]; }"
        )
        assert inner[0] <= inner[1] and inner[2] <= width, f"{path}: header overflows {inner}"
        sidebar = page.locator(".app-nav").bounding_box()
        assert sidebar["x"] + sidebar["width"] <= width, f"{path}: sidebar strip overflows"


def test_the_app_pages_do_not_scroll_sideways_on_a_phone(site, new_context):
    page = _signed_in_page(site, new_context, "phone")
    for path in ["/dashboard/", "/options/", "/backtests/", "/keys/", "/team/"]:
        page.goto(path)
        page.wait_for_load_state()
        assert _page_width(page) <= VIEWPORTS["phone"]["width"], f"{path} scrolls sideways"


def test_the_phone_account_menu_opens_and_closes_from_the_keyboard(site, new_context):
    page = _signed_in_page(site, new_context, "phone")
    page.goto("/dashboard/")
    toggle = page.locator(".account-menu-toggle")
    switcher = page.locator("#org-switcher-select")

    assert toggle.is_visible() and toggle.inner_text().strip() == "Menu"
    assert switcher.is_hidden()

    toggle.focus()
    page.keyboard.press("Enter")
    assert switcher.is_visible()
    assert page.get_by_role("button", name="Sign out").is_visible()
    box = switcher.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORTS["phone"]["width"]
    assert page.get_by_label("Organization").is_visible()  # a visible label, not a guess
    screenshot(page, "menu-open-phone")

    page.keyboard.press("Escape")
    assert switcher.is_hidden()
    assert page.evaluate("() => document.activeElement.classList.contains('account-menu-toggle')")

    # A tap outside closes it too.
    toggle.click()
    assert switcher.is_visible()
    page.mouse.click(VIEWPORTS["phone"]["width"] / 2, VIEWPORTS["phone"]["height"] - 20)
    assert switcher.is_hidden()


def test_the_desktop_header_shows_the_switcher_without_a_menu_button(site, new_context):
    page = _signed_in_page(site, new_context, "desktop")
    page.goto("/dashboard/")

    assert page.locator(".account-menu-toggle").is_hidden()
    assert page.locator("#org-switcher-select").is_visible()
    assert page.get_by_role("button", name="Sign out").is_visible()
    header = page.locator(".site-header").bounding_box()
    assert header["height"] < 80, "the desktop header fits on one line"


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_sidebar_reaches_the_options_calculator_and_backtests(site, new_context, viewport):
    page = _signed_in_page(site, new_context, viewport)
    page.goto("/dashboard/")

    page.locator(".app-nav").get_by_role("link", name="Options calculator").click()
    page.wait_for_url("**/options/")
    page.locator(".app-nav").get_by_role("link", name="Backtests").click()
    page.wait_for_url("**/backtests/")
    current = page.locator(".app-nav [aria-current=page]")
    assert current.inner_text() == "Backtests"
    assert current.is_visible()  # scrolled into view in the phone's tab strip
    if viewport == "phone":
        nav = page.locator(".app-nav").bounding_box()
        item = current.bounding_box()
        assert nav["x"] <= item["x"] and item["x"] + item["width"] <= nav["x"] + nav["width"]
