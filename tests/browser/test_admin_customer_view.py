"""An operator's view of a customer in the admin, in a real browser: signed in with the
password and a TOTP code, a QuantSaaS-branded console with one group per concept, the
organizations listed with their plan (and filtered by it), each organization's page the
customer as they stand today, and a plan granted there written to the audit log."""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from tests.browser.conftest import VIEWPORTS, Site, screenshot
from tests.browser.test_site import PASSWORD
from tests.mfa import fresh_totp_code, totp_code

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

API_CALLS = 3  # made with the customer's key before the operator looks

# What an operator finds: a paying customer with a key, a member and a history; a second
# organization on the free plan that the Plan filter must leave out; a third that the
# operator grants a plan to. Two operators: one signs in once for the module, the other
# shows the sign-in itself (a TOTP code is accepted once, so they do not share one).
CUSTOMER = """
import json
from datetime import timedelta
from allauth.account.models import EmailAddress
from django.utils import timezone
from accounts.models import Membership, Role, User
from accounts.services.api_keys import api_key_create
from accounts.services.organizations import organization_create
from billing.models import Plan, Subscription
from tests.mfa import totp_device_add

def person(email, **extra):
    user = User.objects.create_user(email=email, password={password!r}, **extra)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user

operator = person({operator!r}, is_staff=True, is_superuser=True)
owner = person({owner!r})
member = person({member!r})
paying = organization_create(name={paying!r}, owner=owner)
Membership.objects.create(organization=paying, user=member, role=Role.MEMBER)
Subscription.objects.create(
    organization=paying,
    stripe_subscription_id={subscription!r},
    stripe_customer_id="cus_admin_view",
    plan=Plan.objects.get(code="pro"),
    status="active",
    current_period_end=timezone.now() + timedelta(days=20),
)
created = api_key_create(organization=paying, created_by=owner, name="research notebook")
free = organization_create(name={free!r}, owner=member)
granted = organization_create(name={granted!r}, owner=member)
print(json.dumps({{
    "secret": totp_device_add(operator),
    "gatekeeper_secret": totp_device_add(person({gatekeeper!r}, is_staff=True, is_superuser=True)),
    "key": created.raw_key,
    "masked": created.api_key.masked,
}}))
"""

AUDITED = """
import json
from accounts.models import AuditLog
rows = AuditLog.objects.filter(organization__name={name!r}, action__startswith="billing.plan")
print(json.dumps([[r.action, r.actor.email if r.actor else None, r.target] for r in rows]))
"""


@dataclass
class Customer:
    operator: str
    secret: str
    gatekeeper: str
    gatekeeper_secret: str
    owner: str
    member: str
    paying: str
    free: str
    granted: str
    subscription: str
    masked_key: str


@pytest.fixture(scope="module")
def customer(site: Site) -> Customer:
    token = secrets.token_hex(3)
    names = {
        "operator": f"ops-{token}@quantsaas.test",
        "gatekeeper": f"ops-signin-{token}@quantsaas.test",
        "owner": f"owner-{token}@example.com",
        "member": f"analyst-{token}@example.com",
        "paying": f"Acme Research {token}",
        "free": f"Globex Hobby {token}",
        "granted": f"Initech Pilot {token}",
        "subscription": f"sub_admin_{token}",
    }
    made = json.loads(site.shell(CUSTOMER.format(password=PASSWORD, **names)))
    # Today's usage is counted by the server as the API answers, as for any customer.
    auth = {"Authorization": f"Bearer {made['key']}"}
    for _ in range(API_CALLS):
        answer = requests.get(f"{site.url}api/v1/instruments", headers=auth, timeout=10)
        assert answer.status_code == 200, answer.text
    return Customer(
        secret=made["secret"],
        gatekeeper_secret=made["gatekeeper_secret"],
        masked_key=made["masked"],
        **names,
    )


def _sign_in(page, email: str, secret: str) -> None:
    """The only way into the admin: allauth's sign-in, password then a code."""
    page.goto("/admin/")
    page.wait_for_url(re.compile(r"/accounts/login/"))  # never Django's password-only form
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(r"/accounts/2fa/authenticate/"))
    page.fill("input[name=code]", fresh_totp_code(secret))
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))


@pytest.fixture(scope="module")
def operator_cookies(site: Site, browser, customer: Customer) -> list[dict]:
    """One sign-in for the module's operator; each test opens its own context with it."""
    context = browser.new_context(viewport=VIEWPORTS["desktop"], base_url=site.url)
    try:
        _sign_in(context.new_page(), customer.operator, customer.secret)
        return context.cookies()
    finally:
        context.close()


def _operator_page(new_context, cookies: list[dict], viewport: str):
    context = new_context(viewport)
    context.add_cookies(cookies)
    return context.new_page()


def _texts(locator) -> list[str]:
    """Text as written, not as CSS transforms it (the admin shows captions in capitals)."""
    return [text.strip() for text in locator.all_text_contents()]


def _facts(page) -> dict[str, str]:
    """The organization page's "Plan and usage" panel as label -> value."""
    return _pairs(page.locator("table.qs-admin-facts tr"), "th", "td")


def _pairs(rows, key: str, value: str) -> dict[str, str]:
    """Each row's `key` cell -> its `value` cell, as text."""
    found = {}
    for i in range(rows.count()):
        row = rows.nth(i)
        found[row.locator(key).text_content().strip()] = row.locator(value).text_content().strip()
    return found


def _table(page, field: str) -> list[list[str]]:
    rows = page.locator(f".field-{field} tbody tr")
    return [_texts(rows.nth(i).locator("td")) for i in range(rows.count())]


SETTLED_RESULTS = """() => {
  const shown = [...document.querySelectorAll(".select2-results__option")];
  const searching = shown.some((o) => o.classList.contains("loading-results"));
  return shown.length > 0 && !searching && shown.map((o) => o.textContent.trim());
}"""


def _autocomplete(page, text: str) -> list[str]:
    """Type into the open autocomplete; what it offers once the search for `text` answered."""

    def searched(response) -> bool:
        url = urlparse(response.url)
        return url.path == "/admin/autocomplete/" and parse_qs(url.query).get("term") == [text]

    with page.expect_response(searched):
        page.locator(".select2-search__field").fill(text)
    return page.wait_for_function(SETTLED_RESULTS).json_value()


def _open_organization(page, name: str) -> None:
    """Find the organization the way an operator does: search the list, open the row."""
    page.goto("/admin/accounts/organization/")
    page.fill("#searchbar", name)
    page.press("#searchbar", "Enter")
    page.locator("#result_list").get_by_role("link", name=name, exact=True).click()
    page.wait_for_url(re.compile(r"/admin/accounts/organization/\d+/change/"))


def test_the_admin_asks_for_a_code_and_is_quantsaas_with_one_group_per_concept(
    site, new_context, customer
):
    page = new_context("desktop").new_page()
    page.goto("/admin/")
    page.wait_for_url(re.compile(r"/accounts/login/"))
    page.fill("input[name=login]", customer.gatekeeper)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(r"/accounts/2fa/authenticate/"))
    # The password alone opens nothing, and a stale code is refused.
    stale = totp_code(customer.gatekeeper_secret, at=time.time() - 3600)
    page.fill("input[name=code]", stale)
    page.click("form button[type=submit]")
    page.wait_for_load_state()
    assert "/accounts/2fa/authenticate/" in page.url
    assert "Incorrect code" in page.inner_text("main")
    page.goto("/admin/")
    assert "/admin/" not in page.url.split("?")[0]  # still kept out
    page.goto("/accounts/2fa/authenticate/")
    page.fill("input[name=code]", fresh_totp_code(customer.gatekeeper_secret))
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))

    # The product's console, not Django's.
    assert page.title() == "Site administration | QuantSaaS admin"
    assert page.locator("#site-name").text_content().strip() == "QuantSaaS operations"
    assert "Django" not in page.inner_text("body")

    # One group per concept: no name twice, no second group for people (allauth's
    # "Accounts", its "MFA", Django's "Authentication and Authorization").
    groups = _texts(page.locator("#content-main .module caption"))
    assert len(groups) == len(set(groups)), groups
    assert {"Accounts and organizations", "Billing and plans", "Market data"} <= set(groups)
    for stray in ("Accounts", "MFA", "Authentication and Authorization"):
        assert stray not in groups, groups
    models = page.locator("#content-main .module th a")
    hrefs = [models.nth(i).get_attribute("href") for i in range(models.count())]
    assert len(hrefs) == len(set(hrefs)), hrefs  # each model under exactly one group
    people = _texts(page.locator("#content-main .app-accounts th a"))
    assert {"Users", "Organizations", "Memberships", "API keys", "Audit logs"} <= set(people)
    screenshot(page, "admin-index-desktop")
    page.set_viewport_size(VIEWPORTS["phone"])
    screenshot(page, "admin-index-phone")

    # What left the index lives on the user's page: addresses and second factors, the
    # secret never shown.
    page.set_viewport_size(VIEWPORTS["desktop"])
    page.goto("/admin/accounts/user/")
    page.fill("#searchbar", customer.gatekeeper)
    page.press("#searchbar", "Enter")
    page.locator("#result_list").get_by_role("link", name=customer.gatekeeper).click()
    page.wait_for_url(re.compile(r"/admin/accounts/user/\d+/change/"))
    factors = page.locator(".inline-group", has_text="two-factor authenticators")
    assert "TOTP" in factors.inner_text()
    addresses = page.locator(".inline-group", has_text="email addresses")
    assert addresses.locator("input[value='" + customer.gatekeeper + "']").count() == 1
    assert customer.gatekeeper_secret not in page.content()
    assert page.locator("input.vForeignKeyRawIdAdminField").count() == 0
    screenshot(page, "admin-user-desktop")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_organization_list_shows_each_plan_and_filters_by_it(
    new_context, operator_cookies, customer, viewport
):
    page = _operator_page(new_context, operator_cookies, viewport)
    page.goto("/admin/accounts/organization/")
    headers = _texts(page.locator("#result_list thead th"))
    assert "Plan" in headers, headers

    def listed() -> dict[str, str]:  # organization -> its plan, as the list shows them
        return _pairs(page.locator("#result_list tbody tr"), "th.field-name", "td.field-plan")

    everyone = listed()
    assert everyone[customer.paying] == "Pro" and everyone[customer.free] == "Free", everyone

    # The filter narrows the list to the plan picked, and the column agrees with it.
    choices = page.locator("#changelist-filter")
    for plan, kept, left_out in [
        ("Pro", customer.paying, customer.free),
        ("Free", customer.free, customer.paying),
    ]:
        choices.get_by_role("link", name=plan, exact=True).click()
        page.wait_for_url(re.compile(rf"[?&]plan={plan.lower()}\b"))
        shown = listed()
        assert kept in shown and left_out not in shown, shown
        assert set(shown.values()) == {plan}, shown
        assert len(shown) < len(everyone)
        selected = page.locator("#changelist-filter li.selected a")
        assert plan in _texts(selected)
        screenshot(page, f"admin-organizations-{plan.lower()}-{viewport}")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_organization_page_shows_the_customer_as_they_stand(
    new_context, operator_cookies, customer, viewport
):
    page = _operator_page(new_context, operator_cookies, viewport)
    _open_organization(page, customer.paying)

    facts = _facts(page)
    assert facts["Plan"] == "Pro", facts
    assert facts["From"] == "Subscription (active)", facts
    assert facts["Subscription"].startswith(f"{customer.subscription}: Pro · Active"), facts
    assert facts["API requests today"] == str(API_CALLS), facts
    assert facts["Stream messages today"] == "0", facts
    assert "1,200 API requests a minute" in facts["Limits"], facts

    [key] = _table(page, "customer_keys")
    assert key[:3] == ["research notebook", customer.masked_key, "active"], key
    audit = [row[1:] for row in _table(page, "customer_audit")]
    assert ["Organization created", customer.owner, customer.paying] in audit, audit
    assert ["API key created", customer.owner, customer.masked_key] in audit, audit

    # Members, each picked by name with an autocomplete, never a raw id to type in.
    members = page.locator("#memberships-group")
    chosen = _texts(members.locator(".select2-selection__rendered"))
    assert sorted(chosen) == sorted([customer.owner, customer.member]), chosen
    assert page.locator("input.vForeignKeyRawIdAdminField").count() == 0
    screenshot(page, f"admin-organization-{viewport}")

    members.locator(".add-row a", has_text="Add another Membership").click()
    members.locator(".dynamic-memberships .select2-selection").last.click()
    # The search answers with the person typed, and only them (the owner drops out).
    assert _autocomplete(page, customer.member.split("@")[0]) == [customer.member]
    page.keyboard.press("Escape")  # nothing is saved: the operator only looked


# Every admin form that points at another object: organizations, people, instruments,
# rules and firings are searched by name, never typed in as ids.
RELATED_PICKERS = [
    "/admin/accounts/membership/add/",
    "/admin/billing/planoverride/add/",
    "/admin/billing/stripecustomer/add/",
    "/admin/alerts/alertrule/add/",
    "/admin/alerts/alertfiring/add/",
    "/admin/alerts/alertdelivery/add/",
]


def test_related_objects_are_picked_with_an_autocomplete_everywhere(
    new_context, operator_cookies, customer
):
    page = _operator_page(new_context, operator_cookies, "desktop")
    for path in RELATED_PICKERS:
        page.goto(path)
        assert page.locator("input.vForeignKeyRawIdAdminField").count() == 0, path
        assert page.locator("select.admin-autocomplete + .select2-container").count() >= 1, path
    # An alert rule's organization, found by typing part of its name.
    page.goto("/admin/alerts/alertrule/add/")
    page.locator(".field-organization .select2-selection").click()
    assert _autocomplete(page, customer.free) == [customer.free]
    screenshot(page, "admin-autocomplete-desktop")


def test_a_plan_granted_in_the_admin_is_in_the_audit_log(
    site, new_context, operator_cookies, customer
):
    page = _operator_page(new_context, operator_cookies, "desktop")
    _open_organization(page, customer.granted)
    assert _facts(page)["Plan"] == "Free"

    # From the customer's page to a grant for that customer, picked already.
    page.get_by_role("link", name="Add a plan override").click()
    page.wait_for_url(re.compile(r"/admin/billing/planoverride/add/\?organization=\d+"))
    picked = page.locator("#select2-id_organization-container").text_content().strip()
    assert picked == customer.granted
    page.select_option("#id_plan", label="Enterprise")
    reason = f"Pilot for the quant desk, ticket {secrets.token_hex(2)}"
    page.fill("#id_reason", reason)
    page.click("input[name=_save]")
    page.wait_for_url(re.compile(r"/admin/billing/planoverride/$"))

    _open_organization(page, customer.granted)
    facts = _facts(page)
    assert facts["Plan"] == "Enterprise", facts
    assert facts["From"].startswith("Override: Enterprise") and reason in facts["From"], facts
    what, who, target = _table(page, "customer_audit")[0][1:]  # the newest entry
    assert what == "Plan granted", what  # a label an operator reads, not a code
    assert (who, target) == (customer.operator, "enterprise")
    screenshot(page, "admin-plan-granted-desktop")

    # Changing the grant is recorded too, as its own entry.
    page.locator(".field-customer_plan").get_by_role("link", name="Enterprise").click()
    page.wait_for_url(re.compile(r"/admin/billing/planoverride/\d+/change/"))
    page.select_option("#id_plan", label="Pro")
    page.click("input[name=_save]")
    page.wait_for_url(re.compile(r"/admin/billing/planoverride/$"))
    _open_organization(page, customer.granted)
    assert _facts(page)["Plan"] == "Pro"
    stored = json.loads(site.shell(AUDITED.format(name=customer.granted)))
    assert stored == [
        ["billing.plan_changed", customer.operator, "pro"],
        ["billing.plan_granted", customer.operator, "enterprise"],
    ], stored
    page.set_viewport_size(VIEWPORTS["phone"])
    screenshot(page, "admin-plan-changed-phone")
