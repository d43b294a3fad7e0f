"""The operators' admin for accounts: every page opens, keys are revoked, hashes never shown."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey, AuditLog, Invitation, Membership, Organization, Role, User
from accounts.services.api_keys import api_key_create, api_key_revoke
from tests.factories import OrganizationFactory, UserFactory, membership_add
from tests.mfa import staff_client

MODELS = ["user", "organization", "membership", "invitation", "apikey", "auditlog"]


@pytest.fixture
def operator(db):
    return UserFactory(email="ops@quantsaas.test", is_staff=True, is_superuser=True)


@pytest.fixture
def operator_client(operator) -> Client:
    return staff_client(operator)  # password and TOTP code, as the admin requires


def _invite(organization: Organization, email: str, **fields) -> Invitation:
    return Invitation.objects.create(
        organization=organization,
        email=email,
        role=Role.MEMBER,
        expires_at=fields.pop("expires_at", timezone.now() + timedelta(days=7)),
        **fields,
    )


@pytest.fixture
def accounts_data(acme, alice, bob, carol, globex, mallory):
    """One of everything, in two organizations."""
    key = api_key_create(organization=acme, created_by=alice, name="acme prod").api_key
    api_key_create(organization=globex, created_by=mallory, name="globex research")
    invitation = _invite(acme, "dave@acme.test", invited_by=alice)
    return {
        "user": bob,
        "organization": acme,
        "membership": Membership.objects.get(organization=acme, user=carol),
        "invitation": invitation,
        "apikey": key,
        "auditlog": AuditLog.objects.filter(organization=acme).first(),
    }


@pytest.mark.parametrize("model", MODELS)
def test_operator_can_open_every_changelist_and_change_page(operator_client, accounts_data, model):
    changelist = operator_client.get(reverse(f"admin:accounts_{model}_changelist"))
    change = operator_client.get(
        reverse(f"admin:accounts_{model}_change", args=[accounts_data[model].pk])
    )

    assert changelist.status_code == 200
    assert change.status_code == 200


@pytest.mark.parametrize("model", ["user", "organization", "membership"])
def test_operator_can_open_the_add_pages_that_exist(operator_client, db, model):
    assert operator_client.get(reverse(f"admin:accounts_{model}_add")).status_code == 200


@pytest.mark.parametrize(
    ("model", "query", "expected", "absent"),
    [
        ("user", {"q": "carol@"}, "carol@acme.test", "mallory@globex.test"),
        ("organization", {"q": "globex"}, "Globex Trading", "Acme Capital"),
        ("membership", {"role__exact": "admin"}, "bob@acme.test", "carol@acme.test"),
        ("invitation", {"status": "pending"}, "dave@acme.test", "erin@acme.test"),
        ("apikey", {"q": "globex"}, "globex research", "acme prod"),
        ("apikey", {"status": "revoked"}, "acme prod", "globex research"),
        ("auditlog", {"action__exact": "api_key.revoked"}, "Acme Capital", "Globex Trading"),
        ("auditlog", {"q": "globex"}, "Globex Trading", "Acme Capital"),
    ],
)
def test_search_and_filters_find_what_an_operator_asks_for(
    operator_client, accounts_data, acme, alice, model, query, expected, absent
):
    _invite(acme, "erin@acme.test", expires_at=timezone.now() - timedelta(days=1))
    api_key_revoke(api_key=accounts_data["apikey"], actor=alice)

    response = operator_client.get(reverse(f"admin:accounts_{model}_changelist"), query)

    assert response.status_code == 200
    page = response.content.decode()
    assert expected in page
    assert absent not in page


def test_user_can_be_added_with_an_email_and_password(operator_client, db):
    response = operator_client.post(
        reverse("admin:accounts_user_add"),
        {
            "email": "new@example.test",
            "usable_password": "true",
            "password1": "a-long-unusual-passphrase-7",
            "password2": "a-long-unusual-passphrase-7",
        },
    )

    assert response.status_code == 302, response.content[:2000]
    assert User.objects.get(email="new@example.test").check_password("a-long-unusual-passphrase-7")


def test_revoke_action_revokes_the_selected_keys_and_audits_them(
    operator_client, operator, accounts_data, globex
):
    key = accounts_data["apikey"]
    other = ApiKey.objects.get(organization=globex)

    response = operator_client.post(
        reverse("admin:accounts_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [key.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert "Revoked 1 API key" in response.content.decode()
    key.refresh_from_db()
    other.refresh_from_db()
    assert key.revoked_at is not None
    assert other.revoked_at is None
    audit = AuditLog.objects.get(action=AuditLog.Action.KEY_REVOKED)
    assert audit.actor == operator
    assert audit.organization == key.organization


def test_the_key_hash_is_never_on_an_admin_page(operator_client, accounts_data):
    key = accounts_data["apikey"]
    pages = [
        reverse("admin:accounts_apikey_changelist"),
        reverse("admin:accounts_apikey_change", args=[key.pk]),
        reverse("admin:accounts_organization_change", args=[key.organization_id]),
        reverse("admin:accounts_auditlog_changelist"),
    ]

    for url in pages:
        page = operator_client.get(url).content.decode()
        assert key.key_hash not in page, url
        assert key.masked in page or "organization" in url, url
    assert "key_hash" not in operator_client.get(pages[1]).content.decode()


def test_keys_cannot_be_added_or_deleted_and_audit_rows_cannot_be_edited(
    operator_client, accounts_data
):
    audit = accounts_data["auditlog"]

    assert operator_client.get(reverse("admin:accounts_apikey_add")).status_code == 403
    key_delete = reverse("admin:accounts_apikey_delete", args=[accounts_data["apikey"].pk])
    assert operator_client.post(key_delete, {"post": "yes"}).status_code == 403
    edit = operator_client.post(
        reverse("admin:accounts_auditlog_change", args=[audit.pk]), {"target": "forged"}
    )
    assert edit.status_code == 403
    audit.refresh_from_db()
    assert audit.target != "forged"
    assert ApiKey.objects.filter(pk=accounts_data["apikey"].pk).exists()


@pytest.mark.parametrize("model", MODELS)
def test_changelists_do_not_query_once_per_row(operator_client, accounts_data, model):
    url = reverse(f"admin:accounts_{model}_changelist")
    with CaptureQueriesContext(connection) as few:
        operator_client.get(url)

    for n in range(5):
        owner = UserFactory()
        organization = OrganizationFactory(name=f"Fund {n}", owner=owner)
        membership_add(organization=organization, user=UserFactory(), role="member")
        api_key_create(organization=organization, created_by=owner, name=f"key {n}")
        _invite(organization, f"guest{n}@fund.test", invited_by=owner)
    with CaptureQueriesContext(connection) as many:
        operator_client.get(url)

    assert len(many) <= len(few) + 1, [q["sql"] for q in many.captured_queries]


def test_staff_without_admin_rights_are_not_let_in_by_accident(db):
    client = Client()
    client.force_login(UserFactory(email="someone@example.test"))

    response = client.get(reverse("admin:accounts_apikey_changelist"))

    assert response.status_code == 302  # to the admin login: not staff
