"""Reads of accounts data. Every tenant-owned read takes the organization explicitly."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import ApiKey, AuditLog, Invitation, Membership, Organization, User


def memberships_for_user(*, user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("organization")


def membership_get(*, organization: Organization, user: User) -> Membership | None:
    return Membership.objects.filter(organization=organization, user=user).first()


def organization_for_user(*, user: User, organization_id: int | None) -> Membership | None:
    """The membership in `organization_id` if the user has one, else their first one."""
    memberships = memberships_for_user(user=user).order_by("-organization__is_personal", "pk")
    if organization_id is not None:
        chosen = memberships.filter(organization_id=organization_id).first()
        if chosen is not None:
            return chosen
    return memberships.first()


def organization_members(*, organization: Organization) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(organization=organization)
        .select_related("user")
        .order_by("created_at")
    )


def invitations_pending(*, organization: Organization) -> QuerySet[Invitation]:
    from django.utils import timezone

    return Invitation.objects.filter(
        organization=organization,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    )


def api_keys_for_organization(*, organization: Organization) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(organization=organization).select_related("created_by")


def api_key_get(*, organization: Organization, api_key_id: int) -> ApiKey | None:
    return api_keys_for_organization(organization=organization).filter(pk=api_key_id).first()


def audit_logs_for_organization(*, organization: Organization) -> QuerySet[AuditLog]:
    return AuditLog.objects.filter(organization=organization).select_related(
        "actor", "actor_api_key"
    )
