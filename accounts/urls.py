"""Web pages for organizations, team, invitations and API keys."""

from django.urls import path

from accounts.views import api_keys, invitations, organizations, team, verification

urlpatterns = [
    # organizations: create and switch the current one
    path("orgs/new/", organizations.organization_create, name="organization_create"),
    path("orgs/switch/", organizations.organization_switch, name="organization_switch"),
    # team: members, roles, invitations of the current organization
    path("team/", team.team, name="team"),
    path("team/invite/", team.invitation_create, name="invitation_create"),
    path(
        "team/invitations/<int:invitation_id>/revoke/",
        team.invitation_revoke,
        name="invitation_revoke",
    ),
    path("team/members/<int:membership_id>/role/", team.membership_role, name="membership_role"),
    path(
        "team/members/<int:membership_id>/remove/",
        team.membership_remove,
        name="membership_remove",
    ),
    # a new email-verification link, for people whose first one never arrived
    path(
        "accounts/verification/resend/",
        verification.verification_resend,
        name="verification_resend",
    ),
    # the link in an invitation email
    path("invitations/<str:token>/", invitations.invitation_accept, name="invitation_accept"),
    # API keys of the current organization
    path("keys/", api_keys.api_key_list, name="api_keys"),
    path("keys/new/", api_keys.api_key_create, name="api_key_create"),
    path("keys/<int:api_key_id>/revoke/", api_keys.api_key_revoke, name="api_key_revoke"),
]
