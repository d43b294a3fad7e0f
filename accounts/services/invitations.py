"""Inviting people by email and accepting invitations.

The link in the email carries a django.core.signing signature of the
invitation's id. The signature proves we issued the link; everything else
(expiry, revocation, single use, who may accept) is decided by the row, so an
operator can revoke a link that has already been sent.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import timedelta
from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.limits import limit_hit
from accounts.models import AuditLog, Invitation, Membership, Organization, Role, User
from accounts.services.audit import audit_log_record
from accounts.services.organizations import (
    MembershipError,
    MembershipPermissionError,
    organization_switch,
)

# A salt of its own: a signature made for any other purpose (sessions, password
# resets, allauth's keys) can never be replayed as an invitation token.
TOKEN_SALT = "accounts.invitation"  # noqa: S105  (a namespace, not a secret)


class InvitationRateLimited(MembershipError):
    """Too many invitations from this organization or this person for now."""


def invitation_rate_check(*, organization: Organization, invited_by: User) -> None:
    """Count one invitation against the organization's and the inviter's allowances.

    Every invitation is an email from our domain to any address the inviter types:
    without a limit, a free account could use us to spam. Counted in Redis, per
    organization a day and per inviter an hour (settings INVITATIONS_PER_*).
    """
    per_inviter = limit_hit(
        bucket=f"invite:user:{invited_by.pk}",
        limit=settings.INVITATIONS_PER_INVITER_PER_HOUR,
        window_seconds=3600,
    )
    if not per_inviter.allowed:
        raise InvitationRateLimited(
            "You have sent too many invitations in the last hour. Try again in "
            f"{(per_inviter.reset_seconds + 59) // 60} minutes."
        )
    per_organization = limit_hit(
        bucket=f"invite:org:{organization.pk}",
        limit=settings.INVITATIONS_PER_ORGANIZATION_PER_DAY,
        window_seconds=24 * 3600,
    )
    if not per_organization.allowed:
        raise InvitationRateLimited(
            "This organization has sent as many invitations as it may today. "
            "Try again tomorrow, or contact us if you are onboarding a large team."
        )


class InvitationError(Exception):
    """Why an invitation link cannot be used; `code` lets pages pick a status."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def invitation_token(*, invitation: Invitation) -> str:
    return signing.dumps(invitation.pk, salt=TOKEN_SALT)


def invitation_accept_url(*, invitation: Invitation, base_url: str | None = None) -> str:
    """The absolute link for the email, on the configured public address by default.

    SITE_URL is preferred to the request's Host header: a link mailed to a third
    party must never point wherever a forged Host header says.
    """
    base = (base_url or settings.SITE_URL).rstrip("/")
    path = reverse("invitation_accept", kwargs={"token": invitation_token(invitation=invitation)})
    return f"{base}{path}"


def _invitation_send(*, invitation: Invitation, accept_url: str) -> None:
    # The subject is fixed text: the organization's name is chosen by whoever creates it,
    # and in the subject of a mail from our domain it would be a free phishing headline
    # ("Your account is suspended"). The body names the organization, below the inviter.
    context = {
        "invitation": invitation,
        "organization": invitation.organization,
        "invited_by": invitation.invited_by,
        "accept_url": accept_url,
        "max_age_days": settings.INVITATION_MAX_AGE_DAYS,
    }
    subject_text = render_to_string("accounts/email/invitation_subject.txt", context)
    subject = settings.ACCOUNT_EMAIL_SUBJECT_PREFIX + " ".join(subject_text.split())
    message = render_to_string("accounts/email/invitation_message.txt", context)
    send_mail(subject, message, settings.DEFAULT_FROM_EMAIL, [invitation.email])


@transaction.atomic
def invitation_create(
    *,
    organization: Organization,
    email: str,
    role: str,
    invited_by: User,
    base_url: str | None = None,
    ip_address: str | None = None,
) -> Invitation:
    """Invite `email` into `organization` with `role` and email them the link.

    The email is sent inside the transaction: if it cannot be sent, no
    invitation is left behind that nobody received, and the inviter sees why.
    """
    email = email.strip().lower()
    if role not in Role.values:
        raise MembershipError("Choose owner, admin or member.")
    # Serialise invitations of one organization so two clicks cannot create two.
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    acting = Membership.objects.filter(organization=organization, user=invited_by).first()
    if acting is None or not acting.can_manage:
        raise MembershipPermissionError("Only owners and admins can invite people.")
    if role == Role.OWNER and acting.role != Role.OWNER:
        raise MembershipPermissionError("Only an owner can invite someone as an owner.")
    if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
        raise MembershipError(f"{email} is already a member of {organization.name}.")
    pending = Invitation.objects.filter(
        organization=organization,
        email__iexact=email,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    )
    if pending.exists():
        raise MembershipError(
            f"{email} already has a pending invitation. Revoke it to send a new one."
        )

    invitation_rate_check(organization=organization, invited_by=invited_by)
    invitation = Invitation.objects.create(
        organization=organization,
        email=email,
        role=role,
        invited_by=invited_by,
        expires_at=timezone.now() + timedelta(days=settings.INVITATION_MAX_AGE_DAYS),
    )
    audit_log_record(
        organization=organization,
        action=AuditLog.Action.MEMBER_INVITED,
        actor=invited_by,
        target=email,
        details={"invitation_id": invitation.pk, "role": role},
        ip_address=ip_address,
    )
    _invitation_send(
        invitation=invitation,
        accept_url=invitation_accept_url(invitation=invitation, base_url=base_url),
    )
    return invitation


@transaction.atomic
def invitation_revoke(
    *,
    organization: Organization,
    invitation: Invitation,
    actor: User,
    ip_address: str | None = None,
) -> Invitation:
    acting = Membership.objects.filter(organization=organization, user=actor).first()
    if acting is None or not acting.can_manage:
        raise MembershipPermissionError("Only owners and admins can revoke invitations.")
    invitation = Invitation.objects.select_for_update().get(
        pk=invitation.pk, organization=organization
    )
    if invitation.accepted_at is not None:
        raise MembershipError("That invitation has already been accepted.")
    if invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit_log_record(
            organization=organization,
            action=AuditLog.Action.INVITATION_REVOKED,
            actor=actor,
            target=invitation.email,
            details={"invitation_id": invitation.pk, "role": invitation.role},
            ip_address=ip_address,
        )
    return invitation


def invitation_from_token(*, token: str, lock: bool = False) -> Invitation:
    """The usable invitation a link points to, or InvitationError saying why not.

    With `lock` (inside a transaction) the row stays locked until commit, so the
    same link cannot be accepted twice at once.
    """
    try:
        invitation_id = signing.loads(token, salt=TOKEN_SALT)
    except signing.BadSignature:
        raise InvitationError(
            "This invitation link is not valid. Check that you copied the whole link.",
            code="invalid",
        ) from None
    invitations = Invitation.objects.select_related("organization", "invited_by")
    if lock:
        invitations = invitations.select_for_update(of=("self",))
    invitation = invitations.filter(pk=invitation_id).first()
    if invitation is None:
        raise InvitationError("This invitation no longer exists.", code="invalid")
    if invitation.revoked_at is not None:
        raise InvitationError(
            "This invitation has been revoked. Ask the organization for a new one.",
            code="revoked",
        )
    if invitation.accepted_at is not None:
        raise InvitationError("This invitation has already been used.", code="used")
    if invitation.expires_at <= timezone.now():
        raise InvitationError(
            "This invitation has expired. Ask the organization for a new one.", code="expired"
        )
    return invitation


def invitation_check_recipient(*, invitation: Invitation, user: User) -> None:
    """Only the person the invitation was sent to may accept it.

    The match is against the user's verified addresses: an address someone
    merely typed into their profile proves nothing about owning the inbox.
    """
    owns_address = EmailAddress.objects.filter(
        user=user, verified=True, email__iexact=invitation.email
    ).exists()
    if not owns_address:
        raise InvitationError(
            f"This invitation was sent to {invitation.email}, but you are signed in as "
            f"{user.email}. Sign in with the invited address to accept it.",
            code="wrong_user",
        )


@transaction.atomic
def invitation_accept(
    *,
    token: str,
    user: User,
    session: MutableMapping[str, Any] | None = None,
    ip_address: str | None = None,
) -> Membership:
    """Join the invitation's organization and make it the session's current one."""
    invitation = invitation_from_token(token=token, lock=True)
    invitation_check_recipient(invitation=invitation, user=user)

    organization = invitation.organization
    membership, created = Membership.objects.get_or_create(
        organization=organization, user=user, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    if created:
        audit_log_record(
            organization=organization,
            action=AuditLog.Action.MEMBER_JOINED,
            actor=user,
            target=user.email,
            details={"invitation_id": invitation.pk, "role": membership.role},
            ip_address=ip_address,
        )
    if session is not None:
        organization_switch(session=session, user=user, organization_id=organization.pk)
    return membership
