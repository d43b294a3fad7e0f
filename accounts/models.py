"""Users, organizations (the tenants), memberships, invitations, API keys, audit log."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra: Any) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create(email, password, **extra)


class User(AbstractUser):
    """People log in with their email address; there is no username."""

    # Removing the inherited field is Django's documented way; the stubs declare it a str.
    username = None  # type: ignore[assignment]
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    # The stubs fix the manager to Django's UserManager; ours creates users by email.
    objects = UserManager()  # type: ignore[misc, assignment]

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email


class Organization(models.Model):
    """The tenant: everything a customer owns hangs off one of these."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=140, unique=True)
    is_personal = models.BooleanField(
        default=False, help_text="Created automatically for a user at signup."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Who created it, kept when they leave: the per-user organization cap counts
    # what a person created, so handing an organization over does not free a slot.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="organizations"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


MANAGER_ROLES = frozenset({Role.OWNER, Role.ADMIN})


class Membership(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="unique_membership")
        ]
        ordering = ["organization", "user"]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"

    @property
    def can_manage(self) -> bool:
        """Owners and admins manage keys, billing and members."""
        return self.role in MANAGER_ROLES


class Invitation(models.Model):
    """An email invitation; the link carries a signed token of this row's id."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="invitations"
    )
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "email"])]

    def __str__(self) -> str:
        return f"{self.email} to {self.organization}"

    @property
    def is_pending(self) -> bool:
        return (
            self.accepted_at is None
            and self.revoked_at is None
            and self.expires_at > timezone.now()
        )


class ApiKeyScope(models.TextChoices):
    """What a key may do; each scope grants only its own area (docs/decisions.md)."""

    READ = "read", "Read: market data, analytics, usage"
    TRADE_ANALYTICS = "trade-analytics", "Trade analytics: backtests"
    ADMIN = "admin", "Admin: manage keys and members"


def api_key_scopes_default() -> list[str]:
    """New keys read only; anything more is asked for."""
    return [ApiKeyScope.READ.value]


def api_key_scopes_normalize(scopes: Iterable[str]) -> list[str]:
    """Known scopes, each once, in the declared order (so lists compare and display alike)."""
    wanted = set(scopes)
    return [scope for scope in ApiKeyScope.values if scope in wanted]


def api_key_active_q(*, now: datetime | None = None, through: str = "") -> models.Q:
    """The one definition of an active API key, as a database condition: not revoked,
    and no expiry or one still ahead of `now`. `through` reaches the keys across a
    relation (``"api_keys__"`` from an organization)."""
    moment = now or timezone.now()
    return models.Q(**{f"{through}revoked_at__isnull": True}) & (
        models.Q(**{f"{through}expires_at__isnull": True})
        | models.Q(**{f"{through}expires_at__gt": moment})
    )


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self, *, now: datetime | None = None) -> ApiKeyQuerySet:
        """Keys that authenticate at `now` (default: this instant)."""
        return self.filter(api_key_active_q(now=now))

    def inactive(self, *, now: datetime | None = None) -> ApiKeyQuerySet:
        """Keys revoked or expired at `now`: what must lose an open stream."""
        return self.exclude(api_key_active_q(now=now))


class ApiKey(models.Model):
    """A credential for programs. Only the SHA-256 of the key is stored."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="Shown for recognition.")
    last_four = models.CharField(max_length=4, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_key = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="created_keys",
        help_text="The API key that created this one, if a program did.",
    )
    scopes = models.JSONField(
        default=api_key_scopes_default,
        help_text="Any of: read, trade-analytics, admin.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name or 'API key'} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"{self.prefix}…{self.last_four}"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def is_expired(self, *, now: datetime | None = None) -> bool:
        """Past its expiry at `now` (revoked or not): `api_key_active_q` in Python."""
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired()


class AuditLog(models.Model):
    """Who did what to an organization's security-relevant objects, and when."""

    class Action(models.TextChoices):
        ORGANIZATION_CREATED = "organization.created", "Organization created"
        KEY_CREATED = "api_key.created", "API key created"
        KEY_REVOKED = "api_key.revoked", "API key revoked"
        MEMBER_INVITED = "member.invited", "Member invited"
        INVITATION_REVOKED = "invitation.revoked", "Invitation revoked"
        MEMBER_JOINED = "member.joined", "Member joined"
        ROLE_CHANGED = "member.role_changed", "Role changed"
        MEMBER_REMOVED = "member.removed", "Member removed"
        BACKTEST_SUBMITTED = "backtest.submitted", "Backtest submitted"
        # Recorded by billing and alerts; listed here so operators read a label, not a code.
        PLAN_GRANTED = "billing.plan_granted", "Plan granted"
        PLAN_CHANGED = "billing.plan_changed", "Plan grant changed"
        PLAN_GRANT_REMOVED = "billing.plan_grant_removed", "Plan grant removed"
        UPGRADE_REQUESTED = "billing.upgrade_requested", "Upgrade requested"
        ALERT_RULE_CREATED = "alert_rule.created", "Alert rule created"
        ALERT_RULE_CHANGED = "alert_rule.changed", "Alert rule changed"
        ALERT_RULE_DELETED = "alert_rule.deleted", "Alert rule deleted"
        ALERT_SECRET_ROTATED = "alert_webhook_secret.rotated", "Alert webhook secret rotated"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="audit_logs"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=64, choices=Action.choices, db_index=True)
    target = models.CharField(max_length=200, blank=True, help_text="What was acted on.")
    details = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor or self.actor_api_key or 'system'}"
