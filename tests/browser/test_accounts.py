"""Account flows in the browser: a new verification link, an invitation that signs the
invitee up without a second email, confirmation before removing a member, email links on
the served address, and the team and API key tables as cards on a phone."""

from __future__ import annotations

import re
import secrets
import time

import pytest

from tests.browser.conftest import (
    VIEWPORTS,
    assert_no_sideways_scroll,
    assert_on_screen,
    screenshot,
)
from tests.browser.test_forms import _customer
from tests.browser.test_site import PASSWORD, _sign_up

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

LINK = re.compile(r"(http://\S+)")


def _links_to(site, email: str, path: str, *, count: int = 1, timeout: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout
    found: list[str] = []
    while time.monotonic() < deadline:
        found = [
            link
            for message in site.emails()
            if email in message
            for link in LINK.findall(message)
            if path in link
        ]
        if len(found) >= count:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{count} link(s) to {path} for {email} expected, found {found}")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_verify_page_sends_a_new_link_on_the_served_address(site, new_context, viewport):
    email = f"resend-{viewport}-{secrets.token_hex(4)}@example.com"
    page = new_context(viewport).new_page()
    _sign_up(page, email)
    resend = page.get_by_role("link", name="Email me a new link")
    assert_on_screen(page, resend)
    assert_no_sideways_scroll(page)
    screenshot(page, f"verification-sent-{viewport}")
    resend.click()
    page.fill("input[name=email]", email)
    assert_on_screen(page, page.get_by_role("button", name="Send the link"))
    page.get_by_role("button", name="Send the link").click()
    assert "a new link is on its way" in page.inner_text("main")
    assert_on_screen(page, page.get_by_text("a new link is on its way"))

    links = _links_to(site, email, "/accounts/confirm-email/", count=2)
    assert all(link.startswith(site.url) for link in links), (links, site.url)
    screenshot(page, f"verification-resend-{viewport}")


def _invite_and_join(site, new_context, owner, viewport: str) -> tuple[str, object]:
    """The owner invites a new address; its person signs up from the link and joins.
    Returns the invitee's address and their page (on the dashboard)."""
    invitee = f"invitee-{viewport}-{secrets.token_hex(4)}@example.com"
    owner.goto("/team/")
    owner.fill("input[name=email]", invitee)
    owner.locator("form[action$='/team/invite/'] button[type=submit]").click()
    [link] = _links_to(site, invitee, "/invitations/")
    assert link.startswith(site.url), (link, site.url)  # the address served on, port included

    guest = new_context(viewport).new_page()
    guest.goto(link)
    guest.get_by_role("link", name="Create an account").click()
    assert guest.input_value("input[name=email]") == invitee  # prefilled
    guest.fill("input[name=password1]", PASSWORD)
    guest.fill("input[name=password2]", PASSWORD)
    guest.click("form button[type=submit]")
    guest.wait_for_load_state()
    # Signed up and signed in at once: the invitation proved the address.
    assert "/accounts/confirm-email/" not in "".join(
        m for m in site.emails() if invitee in m and "confirm" in m.lower()
    )
    accept = guest.get_by_role("button", name=re.compile("accept|join", re.I))
    accept.click()
    guest.wait_for_url(re.compile(r"/dashboard/"))
    return invitee, guest


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_an_invitee_joins_without_a_second_email_and_removal_asks_first(
    site, new_context, viewport
):
    owner = _customer(site, new_context, viewport)
    invitee, _ = _invite_and_join(site, new_context, owner, viewport)

    owner.goto("/team/")
    assert owner.get_by_text(invitee).is_visible()
    if viewport == "phone":
        # The member table is cards: nothing scrolls sideways, each value is labelled.
        width = owner.evaluate("() => document.documentElement.scrollWidth")
        assert width <= VIEWPORTS["phone"]["width"]
        row = owner.locator("#member-table tbody tr").first
        assert row.evaluate("el => getComputedStyle(el).display") == "block"
    screenshot(owner, f"team-cards-{viewport}")

    owner.locator("#member-table tr", has_text=invitee).get_by_role("link", name="Remove…").click()
    assert f"Remove {invitee}?" in owner.inner_text("main")
    owner.get_by_role("link", name="Cancel").click()
    owner.wait_for_url(re.compile(r"/team/$"))  # is_visible() does not wait for the page
    assert owner.get_by_text(invitee).is_visible()  # cancelling changed nothing
    owner.locator("#member-table tr", has_text=invitee).get_by_role("link", name="Remove…").click()
    owner.get_by_role("button", name="Remove from the team").click()
    assert f"{invitee} was removed" in owner.inner_text("main")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_member_leaves_only_after_confirming(site, new_context, viewport):
    owner = _customer(site, new_context, viewport)
    invitee, member = _invite_and_join(site, new_context, owner, viewport)
    organization = owner.locator("#org-switcher-select option[selected]").get_attribute("title")
    assert organization.startswith(f"forms-{viewport}-")

    member.goto("/team/")
    assert organization in member.inner_text("h1")  # the team they joined
    # Only their own personal organization is "Personal": the one they joined has its name.
    joined = member.locator("#org-switcher-select option[selected]")
    assert joined.text_content() == organization
    assert member.locator("#org-switcher-select option", has_text="Personal").count() == 1
    mine = member.locator("#member-table tr", has_text=invitee)
    mine.get_by_role("link", name="Leave…").click()
    # A step that says what leaving costs, before anything happens.
    assert member.inner_text("h1") == f"Leave {organization}?"
    assert "Coming back takes a new invitation" in member.inner_text("main")
    screenshot(member, f"team-leave-confirm-{viewport}")
    member.get_by_role("link", name="Stay").click()
    member.wait_for_url(re.compile(r"/team/$"))
    assert member.locator("#member-table").get_by_text(invitee).is_visible()  # still in

    member.locator("#member-table tr", has_text=invitee).get_by_role("link", name="Leave…").click()
    member.get_by_role("button", name=f"Leave {organization}").click()
    member.wait_for_url(re.compile(r"/dashboard/"))
    assert f"You left {organization}." in member.inner_text("main")
    switcher = member.locator("#org-switcher-select option")
    assert organization not in [
        switcher.nth(i).get_attribute("title") for i in range(switcher.count())
    ]
    screenshot(member, f"team-left-{viewport}")

    owner.goto("/team/")
    assert owner.locator("#member-table").get_by_text(invitee).count() == 0
    member.goto("/team/")
    assert organization not in member.inner_text("h1")


def test_api_keys_are_cards_on_a_phone_and_the_switcher_names_whole_words(site, new_context):
    page = _customer(site, new_context, "phone")
    page.goto("/keys/")
    page.fill("input[name=name]", "phone key")
    page.click("form[action$='/keys/new/'] button[type=submit]")
    page.goto("/keys/")
    card = page.locator("#api-key-table tbody tr").first
    assert card.evaluate("el => getComputedStyle(el).display") == "block"
    label = card.locator("td[data-label='Last used']").evaluate(
        "el => getComputedStyle(el, '::before').content"
    )
    assert label == '"Last used"'  # each value carries its label
    assert_no_sideways_scroll(page)
    screenshot(page, "api-keys-cards-phone")

    # The personal organization is named after the (long) email address: the switcher says
    # "Personal" rather than a name cut off mid-word, and keeps the full name as its title;
    # on a phone inside the account menu, on a desktop in the header.
    page.locator(".account-menu-toggle").click()
    _switcher_names_whole_words(page, "phone")
    screenshot(page, "org-switcher-phone")

    # On a desktop the same keys stay a table (a row per key, a column per field).
    desktop = new_context("desktop", storage_state=page.context.storage_state()).new_page()
    desktop.goto("/keys/")
    row = desktop.locator("#api-key-table tbody tr").first
    assert row.evaluate("el => getComputedStyle(el).display") == "table-row"
    assert desktop.locator("#api-key-table thead").is_visible()
    assert_no_sideways_scroll(desktop)
    screenshot(desktop, "api-keys-table-desktop")
    _switcher_names_whole_words(desktop, "phone")  # the same customer, signed up on a phone
    screenshot(desktop, "org-switcher-desktop")


def _switcher_names_whole_words(page, signed_up_as: str) -> None:
    option = page.locator("#org-switcher-select option[selected]")
    assert option.inner_text() == "Personal"
    assert option.get_attribute("title").startswith(f"forms-{signed_up_as}-")  # the full name
    select = page.locator("#org-switcher-select")
    assert_on_screen(page, select)
    assert select.evaluate("el => el.scrollWidth <= el.clientWidth + 1")
