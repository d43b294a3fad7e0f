"""Who may change roles and remove members, through the team page's forms."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.models import AuditLog, Membership, Role
from accounts.services.organizations import MembershipError, membership_leave
from tests.conftest import client_for
from tests.factories import OrganizationFactory, UserFactory, membership_add


def _membership(organization, user) -> Membership:
    return Membership.objects.get(organization=organization, user=user)


def _set_role(client, membership: Membership, role: str):
    return client.post(reverse("membership_role", args=[membership.pk]), {"role": role})


def _remove(client, membership: Membership):
    return client.post(reverse("membership_remove", args=[membership.pk]))


def _role(organization, user) -> str:
    return _membership(organization, user).role


def _team_html(client) -> str:
    return client.get(reverse("team")).content.decode()


def test_team_page_lists_members_with_roles_and_join_dates(alice_client, bob, carol):
    html = _team_html(alice_client)
    for email in ("alice@acme.test", "bob@acme.test", "carol@acme.test"):
        assert email in html
    assert "Owner" in html and "Admin" in html and "Member" in html
    joined = _membership(bob.memberships.get().organization, bob).created_at
    assert joined.strftime("%Y") in html


def test_managers_see_the_controls_and_members_do_not(alice_client, acme, bob, carol):
    assert "Send invitation" in _team_html(alice_client)
    assert reverse("membership_role", args=[_membership(acme, carol).pk]) in _team_html(
        alice_client
    )
    carol_html = _team_html(client_for(carol, acme))
    assert "Send invitation" not in carol_html
    assert reverse("membership_role", args=[_membership(acme, bob).pk]) not in carol_html
    assert reverse("membership_remove", args=[_membership(acme, bob).pk]) not in carol_html


def test_admins_are_not_offered_the_owner_role(acme, bob, carol):
    html = _team_html(client_for(bob, acme))
    assert 'value="owner"' not in html
    assert 'value="admin"' in html


def test_member_cannot_change_roles_or_remove_anyone(acme, bob, carol):
    client = client_for(carol, acme)
    assert _set_role(client, _membership(acme, carol), "admin").status_code == 403
    assert _set_role(client, _membership(acme, bob), "member").status_code == 403
    assert _remove(client, _membership(acme, bob)).status_code == 403
    assert _role(acme, carol) == Role.MEMBER
    assert _role(acme, bob) == Role.ADMIN
    assert not AuditLog.objects.filter(action=AuditLog.Action.ROLE_CHANGED).exists()


def test_admin_can_promote_a_member_to_admin_and_it_is_audited(acme, bob, carol):
    response = _set_role(client_for(bob, acme), _membership(acme, carol), "admin")
    assert response.status_code == 302
    assert _role(acme, carol) == Role.ADMIN
    row = AuditLog.objects.get(organization=acme, action=AuditLog.Action.ROLE_CHANGED)
    assert row.actor == bob
    assert row.target == "carol@acme.test"
    assert row.details["from"] == "member" and row.details["to"] == "admin"


def test_admin_cannot_promote_anyone_to_owner(acme, bob, carol):
    client = client_for(bob, acme)
    assert _set_role(client, _membership(acme, carol), "owner").status_code == 403
    assert _set_role(client, _membership(acme, bob), "owner").status_code == 403
    assert _role(acme, carol) == Role.MEMBER
    assert _role(acme, bob) == Role.ADMIN


def test_admin_cannot_demote_or_remove_an_owner(acme, alice, bob):
    client = client_for(bob, acme)
    assert _set_role(client, _membership(acme, alice), "member").status_code == 403
    assert _remove(client, _membership(acme, alice)).status_code == 403
    assert _role(acme, alice) == Role.OWNER


def test_last_owner_cannot_step_down(alice_client, acme, alice, bob):
    response = _set_role(alice_client, _membership(acme, alice), "admin")
    assert response.status_code == 302
    assert _role(acme, alice) == Role.OWNER
    assert "at least one owner" in _team_html(alice_client)
    assert not AuditLog.objects.filter(action=AuditLog.Action.ROLE_CHANGED).exists()


def test_last_owner_cannot_leave(alice_client, acme, alice):
    response = _remove(alice_client, _membership(acme, alice))
    assert response.status_code == 302
    assert Membership.objects.filter(organization=acme, user=alice).exists()
    assert "at least one owner" in _team_html(alice_client)


def test_owner_transfers_ownership_by_promoting_someone_then_stepping_down(
    alice_client, acme, alice, bob
):
    assert _set_role(alice_client, _membership(acme, bob), "owner").status_code == 302
    assert _set_role(alice_client, _membership(acme, alice), "member").status_code == 302
    assert _role(acme, bob) == Role.OWNER
    assert _role(acme, alice) == Role.MEMBER
    changes = AuditLog.objects.filter(organization=acme, action=AuditLog.Action.ROLE_CHANGED)
    assert sorted(changes.values_list("target", flat=True)) == [
        "alice@acme.test",
        "bob@acme.test",
    ]
    # Alice is now an ordinary member: she can no longer manage the team.
    assert _set_role(alice_client, _membership(acme, bob), "member").status_code == 403


def test_owner_can_remove_a_member_and_it_is_audited(alice_client, acme, alice, carol):
    response = _remove(alice_client, _membership(acme, carol))
    assert response.status_code == 302
    assert not Membership.objects.filter(organization=acme, user=carol).exists()
    row = AuditLog.objects.get(organization=acme, action=AuditLog.Action.MEMBER_REMOVED)
    assert row.actor == alice
    assert row.target == "carol@acme.test"
    assert "carol@acme.test was removed" in _team_html(alice_client)
    assert "carol@acme.test" not in _team_html(alice_client)  # the message was shown once


def test_removed_member_loses_access_to_the_organization(alice_client, acme, carol):
    carol_client = client_for(carol, acme)
    _remove(alice_client, _membership(acme, carol))
    response = carol_client.get(reverse("team"))
    # Carol has no other organization, so she is asked to create one.
    assert response.status_code == 302
    assert response["Location"] == reverse("organization_create")


def test_member_can_leave(acme, carol):
    client = client_for(carol, acme)
    response = _remove(client, _membership(acme, carol))
    assert response.status_code == 302
    assert not Membership.objects.filter(organization=acme, user=carol).exists()
    row = AuditLog.objects.get(action=AuditLog.Action.MEMBER_REMOVED)
    assert row.actor == carol
    assert row.details["left"] is True


def test_one_of_two_owners_can_leave(alice_client, acme, alice, bob):
    _set_role(alice_client, _membership(acme, bob), "owner")
    assert _remove(alice_client, _membership(acme, alice)).status_code == 302
    assert list(acme.memberships.values_list("role", flat=True)) == [Role.OWNER]


def test_posts_without_a_csrf_token_are_refused(alice, acme, carol):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert _remove(client, _membership(acme, carol)).status_code == 403
    assert Membership.objects.filter(organization=acme, user=carol).exists()


def test_another_organization_cannot_see_or_change_acme_team(mallory_client, acme, alice, carol):
    html = _team_html(mallory_client)
    assert "Globex Trading" in html
    assert "carol@acme.test" not in html
    for response in (
        _set_role(mallory_client, _membership(acme, carol), "owner"),
        _set_role(mallory_client, _membership(acme, alice), "member"),
        _remove(mallory_client, _membership(acme, carol)),
        _remove(mallory_client, _membership(acme, alice)),
    ):
        assert response.status_code == 404
    assert _role(acme, carol) == Role.MEMBER
    assert _role(acme, alice) == Role.OWNER
    assert not AuditLog.objects.filter(
        organization=acme,
        action__in=[AuditLog.Action.ROLE_CHANGED, AuditLog.Action.MEMBER_REMOVED],
    ).exists()


def test_a_forged_session_organization_does_not_reach_another_team(mallory, globex, acme, carol):
    # Mallory's session claims Acme; the middleware only honours memberships.
    client = client_for(mallory, acme)
    html = _team_html(client)
    assert "Globex Trading" in html
    assert "carol@acme.test" not in html
    assert _remove(client, _membership(acme, carol)).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_two_owners_leaving_at_once_leave_one_owner_behind():
    """Each sees another owner; without the lock both could leave and orphan the team."""
    first, second = UserFactory(), UserFactory()
    organization = OrganizationFactory(name="Race Ltd", owner=first)
    membership_add(organization=organization, user=second, role=Role.OWNER)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def leave(user) -> None:
        try:
            barrier.wait()
            membership_leave(organization=organization, user=user)
            outcomes.append("left")
        except MembershipError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=leave, args=(user,)) for user in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["left", "refused"]
    assert organization.memberships.filter(role=Role.OWNER).count() == 1
