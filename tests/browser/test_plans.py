"""Plans in the browser: a comparison table in human units with the customer's plan
highlighted, readable on a phone without the page scrolling sideways."""

from __future__ import annotations

import pytest

from tests.browser.conftest import VIEWPORTS, screenshot
from tests.browser.test_forms import _customer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_pricing_compares_plans_and_highlights_the_current_one(site, new_context, viewport):
    page = _customer(site, new_context, viewport)
    page.goto("/pricing/")
    table = page.locator("#plan-comparison")
    assert table.is_visible()
    text = table.inner_text()
    assert "Delayed 15 minutes" in text and "60 requests a minute" in text and "7 days" in text

    current = page.locator("#plan-comparison thead th.plan-current")
    assert current.count() == 1 and current.inner_text().startswith("Free")
    other = page.locator("#plan-pro")
    background = "el => getComputedStyle(el).backgroundColor"
    assert current.evaluate(background) != other.evaluate(background)
    # Buy buttons match what is possible: this server sells online, the free plan is held.
    assert page.get_by_role("button", name="Upgrade to Pro").is_visible()
    assert page.locator("tfoot td.plan-current").inner_text().strip() == "Your current plan"
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= VIEWPORTS[viewport]["width"], "the page scrolls sideways"
    screenshot(page, f"pricing-comparison-{viewport}")
