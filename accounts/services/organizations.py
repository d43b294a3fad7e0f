"""Creating organizations and managing who belongs to them.

The membership rules live here and nowhere else: only owners and admins manage
members; only an owner grants, changes or removes the owner role; and an
organization always keeps at least one owner.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils.text import slugify

from accounts.allowances import plan_allowances
from accounts.middleware import SESSION_KEY
from accounts.models import AuditLog, Membership, Organization, Role, User
from accounts.services.audit import audit_log_record


class MembershipError(Exception):
    """A membership rule refused the change; the message is safe to show the user."""


class MembershipPermissionError(MembershipError):
    """The actor's role does not allow the change at all (web pages answer 403)."""


class OrganizationLimitReached(MembershipPermissionError):
    """The user may not create another organization (docs/decisions.md, organizations)."""


def _unique_slug(name: str) -> str:
    base = slugify(name)[:120] or "org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def organization_limit_check(*, user: User) -> None:
    """Raise OrganizationLimitReached when `user` may not create another organization.

    Every organization gets the free plan's quotas, so an unlimited number of them
    would multiply those quotas by scripting the create page. Counted are the
    organizations the user created or owns: handing one over and leaving does not
    free a slot. Free ones are capped at ACCOUNTS_FREE_ORGANIZATIONS_PER_USER (the
    personal one included); paid ones (a subscription or an operator's grant) only
    by the overall ACCOUNTS_ORGANIZATIONS_PER_USER, so a fund can add desks it pays for.
    """
    if transaction.get_connection().in_atomic_block:
        # Serialise creations per user: two concurrent requests cannot both pass the count.
        User.objects.select_for_update().filter(pk=user.pk).first()
    counted = list(
        Organization.objects.filter(
            Q(created_by=user) | Q(memberships__user=user, memberships__role=Role.OWNER)
        ).distinct()
    )
    overall = settings.ACCOUNTS_ORGANIZATIONS_PER_USER
    if len(counted) >= overall:
        raise OrganizationLimitReached(
            f"You can create or own at most {overall} organizations. Contact us for more."
        )
    free_allowance = settings.ACCOUNTS_FREE_ORGANIZATIONS_PER_USER
    allowances = plan_allowances()
    free = [o for o in counted if allowances.is_free(organization=o)]
    if len(free) >= free_allowance:
        raise OrganizationLimitReached(
            f"You already have {len(free)} organizations on the free plan, the most allowed. "
            "Upgrade one of them to a paid plan to create another."
        )


@transaction.atomic
def organization_create(
    *, name: str, owner: User, is_personal: bool = False, ip_address: str | None = None
) -> Organization:
    """Create an organization owned by `owner`, within the per-user cap.

    The personal organization made at signup is never refused (it is the first),
    but it counts towards the cap.
    """
    if not is_personal:
        organization_limit_check(user=owner)
    organization = Organization.objects.create(
        name=name, slug=_unique_slug(name), is_personal=is_personal, created_by=owner
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


def organization_switch(
    *, session: MutableMapping[str, Any], user: User, organization_id: int
) -> Membership:
    """Make `organization_id` the session's current organization.

    Only a membership makes an organization reachable: a forged id is refused
    and the session keeps the organization it had (the middleware re-validates
    the stored id on every request as well).
    """
    membership = (
        Membership.objects.filter(user=user, organization_id=organization_id)
        .select_related("organization")
        .first()
    )
    if membership is None:
        raise MembershipError("You are not a member of that organization.")
    session[SESSION_KEY] = membership.organization_id
    return membership


def _lock_organization(organization: Organization) -> None:
    """Serialise membership changes of one organization.

    Two owners demoting or removing each other at the same moment would each
    see "another owner remains" and leave the organization with none. Locking
    the organization row makes the owner count read below exact.
    """
    Organization.objects.select_for_update().filter(pk=organization.pk).first()


def _actor_membership(*, organization: Organization, actor: User) -> Membership:
    # Re-read inside the lock: the actor's own role may have changed a moment ago.
    membership = Membership.objects.filter(organization=organization, user=actor).first()
    if membership is None:
        raise MembershipPermissionError("You are not a member of this organization.")
    return membership


def _owner_count(organization: Organization) -> int:
    return Membership.objects.filter(organization=organization, role=Role.OWNER).count()


def _refresh_target(*, organization: Organization, membership: Membership) -> Membership:
    # Re-read inside the lock, and only within this organization.
    target = (
        Membership.objects.select_related("user")
        .filter(pk=membership.pk, organization=organization)
        .first()
    )
    if target is None:
        raise MembershipError("That person is no longer a member of this organization.")
    return target


@transaction.atomic
def membership_role_change(
    *,
    organization: Organization,
    membership: Membership,
    role: str,
    actor: User,
    ip_address: str | None = None,
) -> Membership:
    """Give `membership` a new role, enforcing who may grant what."""
    if role not in Role.values:
        raise MembershipError("Choose owner, admin or member.")
    _lock_organization(organization)
    acting = _actor_membership(organization=organization, actor=actor)
    target = _refresh_target(organization=organization, membership=membership)

    if not acting.can_manage:
        raise MembershipPermissionError("Only owners and admins can change roles.")
    if role == Role.OWNER and acting.role != Role.OWNER:
        raise MembershipPermissionError("Only an owner can make someone an owner.")
    if target.role == Role.OWNER and acting.role != Role.OWNER:
        raise MembershipPermissionError("Only an owner can change an owner's role.")
    if target.role == role:
        return target
    if target.role == Role.OWNER and _owner_count(organization) == 1:
        raise MembershipError(
            "An organization needs at least one owner. Make someone else an owner first."
        )

    previous = target.role
    target.role = role
    target.save(update_fields=["role"])
    audit_log_record(
        organization=organization,
        action=AuditLog.Action.ROLE_CHANGED,
        actor=actor,
        target=target.user.email,
        details={"membership_id": target.pk, "from": previous, "to": role},
        ip_address=ip_address,
    )
    return target


@transaction.atomic
def membership_remove(
    *,
    organization: Organization,
    membership: Membership,
    actor: User,
    ip_address: str | None = None,
) -> None:
    """Remove a member, or let a member leave when `membership` is the actor's own."""
    _lock_organization(organization)
    acting = _actor_membership(organization=organization, actor=actor)
    target = _refresh_target(organization=organization, membership=membership)
    leaving = target.pk == acting.pk

    if not leaving:
        if not acting.can_manage:
            raise MembershipPermissionError("Only owners and admins can remove members.")
        if target.role == Role.OWNER and acting.role != Role.OWNER:
            raise MembershipPermissionError("Only an owner can remove an owner.")
    if target.role == Role.OWNER and _owner_count(organization) == 1:
        raise MembershipError(
            "An organization needs at least one owner. Make someone else an owner first."
        )

    email, role, membership_id = target.user.email, target.role, target.pk
    target.delete()
    audit_log_record(
        organization=organization,
        action=AuditLog.Action.MEMBER_REMOVED,
        actor=actor,
        target=email,
        details={"membership_id": membership_id, "role": role, "left": leaving},
        ip_address=ip_address,
    )


def membership_leave(
    *, organization: Organization, user: User, ip_address: str | None = None
) -> None:
    """The signed-in user leaves `organization` (refused for its last owner)."""
    membership = Membership.objects.filter(organization=organization, user=user).first()
    if membership is None:
        raise MembershipError("You are not a member of this organization.")
    membership_remove(
        organization=organization, membership=membership, actor=user, ip_address=ip_address
    )
