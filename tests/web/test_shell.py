"""The site's shell (header and sidebar) as the server renders it.

How it behaves at phone and desktop widths is checked in a real browser in
tests/browser/test_shell.py; here: what every signed-in page offers.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

SIDEBAR_PAGES = ["dashboard", "options", "backtests", "api_keys", "team"]


def _sidebar(body: str) -> str:
    match = re.search(r'<nav class="app-nav"[^>]*>(.*?)</nav>', body, re.S)
    assert match, "no sidebar on the page"
    return match.group(1)


@pytest.mark.parametrize("name", SIDEBAR_PAGES)
def test_the_sidebar_links_to_the_options_calculator_and_backtests(alice_client, name):
    sidebar = _sidebar(alice_client.get(reverse(name)).content.decode())

    assert f'href="{reverse("options")}"' in sidebar
    assert f'href="{reverse("backtests")}"' in sidebar
    assert "Options calculator" in sidebar and "Backtests" in sidebar


@pytest.mark.parametrize("name", ["options", "backtests"])
def test_the_sidebar_marks_the_page_you_are_on(alice_client, name):
    sidebar = _sidebar(alice_client.get(reverse(name)).content.decode())

    current = re.findall(r'<a href="([^"]+)" aria-current="page">', sidebar)
    assert current == [reverse(name)]


def test_the_account_menu_holds_the_switcher_email_and_sign_out(alice, alice_client):
    body = alice_client.get(reverse("dashboard")).content.decode()
    menu = re.search(r"<details class=\"account-menu\"[^>]*>(.*?)</details>", body, re.S)

    assert menu, "no account menu in the header"
    # Rendered open, so the header works for visitors without JavaScript.
    assert re.search(r"<details class=\"account-menu\"[^>]*\bopen\b", body)
    assert "<summary" in menu.group(1) and "Menu" in menu.group(1)
    assert reverse("organization_switch") in menu.group(1)
    assert alice.email in menu.group(1)
    assert reverse("account_logout") in menu.group(1)


def test_visitors_see_the_public_links_and_no_account_menu(client):
    body = client.get(reverse("pricing")).content.decode()

    assert "account-menu" not in body
    assert reverse("account_login") in body and reverse("account_signup") in body
