"""Plans on a server without online payment: the customer asks for a plan with a form,
is thanked in plain words, the request is stored for operators and confirmed by email,
and the operator's notes on the grant that answers it never reach the customer."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator

import pytest

from tests.browser.conftest import VIEWPORTS, Site, screenshot, site_running
from tests.browser.test_forms import _customer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

OPERATOR_NOTE = "goodwill after the outage, do not mention to the client"
GRANT_REASON = "Upgrade request granted by ops, margin case 4711"

STORED = """
import json
from billing.models import UpgradeRequest
found = UpgradeRequest.objects.filter(contact_email={email!r}).select_related("plan")
print(json.dumps([[r.plan.code, r.status, r.message] for r in found]))
"""

GRANT = """
from billing.models import UpgradeRequest
from billing.services.overrides import plan_override_grant
request = UpgradeRequest.objects.get(contact_email={email!r})
request.operator_notes = {note!r}
request.status = UpgradeRequest.Status.GRANTED
request.save(update_fields=["operator_notes", "status"])
plan_override_grant(
    organization=request.organization, plan=request.plan, reason={reason!r}, granted_by=None
)
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """This module's server sells nothing online: STRIPE_SECRET_KEY is empty.

    The grant is written by another process (`Site.shell`), whose cache invalidation
    cannot reach the server's in-memory cache; a one-second entitlements cache lets the
    customer see the granted plan as they would after an admin's grant."""
    yield from site_running(
        tmp_path_factory, with_stripe=False, BILLING_ENTITLEMENTS_CACHE_SECONDS="1"
    )


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_customer_requests_a_plan_and_never_sees_the_operators_notes(site, new_context, viewport):
    page = _customer(site, new_context, viewport)

    # Pricing offers a request instead of a checkout this server cannot run.
    page.goto("/pricing/")
    assert page.get_by_role("button", name="Upgrade to Pro").count() == 0
    page.get_by_role("link", name="Request Pro").click()
    page.wait_for_url(re.compile(r"/billing/upgrade-request/\?plan=pro"))
    main = page.inner_text("main")
    assert "Online payment is not available on this server yet" in main
    email = page.inner_text("main .card p strong")  # where the answer will go
    assert re.fullmatch(rf"forms-{viewport}-\w+@example\.com", email), email
    assert "STRIPE" not in main and "settings" not in main.lower()  # no operator jargon
    assert page.get_by_label("Plan").input_value() == "pro"
    message = f"PO {secrets.token_hex(3)} for the research desk"
    page.get_by_label("Anything we should know? (optional)").fill(message)
    screenshot(page, f"upgrade-request-form-{viewport}")
    page.get_by_role("button", name="Send the request").click()

    page.wait_for_url(re.compile(r"/billing/$"))
    thanks = page.locator("main").get_by_text("your request is with our team")
    assert thanks.is_visible()
    assert email in thanks.inner_text() and "Nothing changes or is charged" in thanks.inner_text()
    screenshot(page, f"upgrade-request-sent-{viewport}")

    stored = json.loads(site.shell(STORED.format(email=email)))
    assert stored == [["pro", "open", message]], stored
    confirmations = [m for m in site.emails() if email in m and message in m]
    assert confirmations, "no confirmation email"

    # An operator grants the plan with notes of their own; the customer sees the grant,
    # never the notes.
    site.shell(GRANT.format(email=email, note=OPERATOR_NOTE, reason=GRANT_REASON))
    page.wait_for_timeout(2_000)  # the server's cached entitlements expire
    page.goto("/billing/")
    assert page.get_attribute("[data-plan]", "data-plan") == "pro"
    assert page.locator("main").get_by_text("Granted by QuantSaaS").is_visible()
    for path in ["/billing/", "/pricing/", "/dashboard/", "/billing/usage/", "/team/"]:
        page.goto(path)
        body = page.content()
        assert OPERATOR_NOTE not in body and GRANT_REASON not in body, path
    page.goto("/billing/")
    screenshot(page, f"upgrade-request-granted-{viewport}")
