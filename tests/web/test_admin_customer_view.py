"""The operators' admin: an organization's page is the customer's view, the list says
each organization's plan, plan grants are audited, and the console is QuantSaaS's."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import AuditLog
from accounts.services.api_keys import api_key_create
from billing.models import Plan, PlanOverride, UpgradeRequest
from tests.factories import UserFactory
from tests.mfa import staff_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(db):
    operator = UserFactory(email="ops@quantsaas.test", is_staff=True, is_superuser=True)
    return staff_client(operator)


def test_the_organization_page_is_the_customers_view(operator_client, acme, alice, carol):
    api_key_create(organization=acme, created_by=alice, name="research notebook")

    body = operator_client.get(reverse("admin:accounts_organization_change", args=[acme.pk]))
    text = body.content.decode()

    assert body.status_code == 200
    for expected in [
        "Plan and usage",
        "Free",
        "No paying subscription",
        "API requests today",
        "Stream messages today",
        "research notebook",
        "carol@acme.test",
        "Recent audit entries",
        "API key created",
        "Add a plan override",
    ]:
        assert expected in text, expected


def test_the_list_shows_and_filters_by_plan(operator_client, acme, globex):
    PlanOverride.objects.create(organization=globex, plan=Plan.objects.get(code="pro"), reason="x")
    url = reverse("admin:accounts_organization_changelist")

    everyone = operator_client.get(url).content.decode()
    pro_only = operator_client.get(url + "?plan=pro").content.decode()

    assert "column-plan" in everyone
    assert "Globex Trading" in pro_only and "Acme Capital" not in pro_only


def test_plan_grants_in_the_admin_are_audited(operator_client, acme):
    pro = Plan.objects.get(code="pro")
    response = operator_client.post(
        reverse("admin:billing_planoverride_add"),
        {"organization": acme.pk, "plan": pro.pk, "reason": "pilot", "until_0": "", "until_1": ""},
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    entry = AuditLog.objects.get(organization=acme, action="billing.plan_granted")
    assert entry.target == "pro" and entry.actor.email == "ops@quantsaas.test"
    # Operators read a label in the customer view and can filter the audit log by it.
    page = operator_client.get(reverse("admin:accounts_organization_change", args=[acme.pk]))
    assert "Plan granted" in page.content.decode()
    audit = operator_client.get(reverse("admin:accounts_auditlog_changelist")).content.decode()
    assert "action__exact=billing.plan_granted" in audit


def test_granting_an_upgrade_request_gives_the_plan_and_audits_it(operator_client, acme, alice):
    request = UpgradeRequest.objects.create(
        organization=acme,
        plan=Plan.objects.get(code="pro"),
        requested_by=alice,
        contact_email=alice.email,
    )
    operator_client.post(
        reverse("admin:billing_upgraderequest_changelist"),
        {"action": "grant", "_selected_action": [request.pk]},
    )

    request.refresh_from_db()
    assert request.status == "granted"
    assert PlanOverride.objects.get(organization=acme).plan.code == "pro"
    assert AuditLog.objects.filter(organization=acme, action="billing.plan_granted").exists()


def test_the_console_is_branded_with_one_group_per_concept(operator_client):
    text = operator_client.get(reverse("admin:index")).content.decode()

    assert "QuantSaaS operations" in text
    assert "Django administration" not in text
    assert "Authentication and Authorization" not in text
    assert 'href="/admin/account/"' not in text  # allauth's second "Accounts" group
    assert "Accounts and organizations" in text


def test_grants_pick_the_organization_by_name_not_by_raw_id(operator_client):
    text = operator_client.get(reverse("admin:billing_planoverride_add")).content.decode()

    assert "admin-autocomplete" in text
    assert "vForeignKeyRawIdAdminField" not in text
