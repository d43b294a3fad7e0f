"""Creating organizations and managing who belongs to them."""

from __future__ import annotations

from django.db import transaction
from django.utils.text import slugify

from accounts.models import AuditLog, Membership, Organization, Role, User
from accounts.services.audit import audit_log_record


def _unique_slug(name: str) -> str:
    base = slugify(name)[:120] or "org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def organization_create(
    *, name: str, owner: User, is_personal: bool = False, ip_address: str | None = None
) -> Organization:
    organization = Organization.objects.create(
        name=name, slug=_unique_slug(name), is_personal=is_personal
    )
    Membership.objects.create(organization=organization, user=owner, role=Role.OWNER)
    audit_log_record(
        organization=organization,
        action=AuditLog.Action.ORGANIZATION_CREATED,
        actor=owner,
        target=name,
        ip_address=ip_address,
    )
    return organization


def personal_organization_ensure(*, user: User) -> Organization:
    """Every user has a personal organization they own; created at signup."""
    membership = (
        Membership.objects.filter(user=user, organization__is_personal=True, role=Role.OWNER)
        .select_related("organization")
        .first()
    )
    if membership is not None:
        return membership.organization
    label = user.email.split("@", 1)[0]
    return organization_create(name=f"{label}'s organization", owner=user, is_personal=True)
