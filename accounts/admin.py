"""The operators' view of accounts: users, organizations, memberships, invitations, keys, audit.

Writes that carry business rules go through the same services the product
uses (revoking a key writes its audit row here too). Key hashes are never
shown, keys are never created here (the raw key could not be handed over
safely) and audit rows are read-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from allauth.account.decorators import secure_admin_login
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.contrib import admin, messages
from django.contrib.admin.options import InlineModelAdmin
from django.contrib.auth import forms as auth_forms
from django.contrib.auth.models import Group
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts.decorators import signed_in_user
from accounts.models import (
    ApiKey,
    AuditLog,
    Invitation,
    Membership,
    User,
    api_key_active_q,
)
from accounts.services.api_keys import api_key_revoke, api_key_status
from accounts.services.audit import client_ip
from quantsaas.admin_generics import (
    AdminUserCreationForm,
    ModelAdmin,
    TabularInline,
    UserChangeForm,
)
from quantsaas.admin_generics import UserAdmin as DjangoUserAdmin

if TYPE_CHECKING:
    pass

# Operators sign in through allauth like everyone else, so its rate limits and the TOTP
# step apply; Django's own admin login form (password only) is never served.
# accounts.middleware.StaffMfaMiddleware then requires TOTP for staff on every admin page.
# django-stubs declares login a method; replacing it on the site instance is the hook.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]

# The operators' console is the product's, not Django's.
admin.site.site_header = "QuantSaaS operations"
admin.site.site_title = "QuantSaaS admin"
admin.site.site_url = "/dashboard/"

# One admin group per concept: people live under "Accounts and organizations", so
# allauth's email addresses and two-factor authenticators become part of the user page
# (below) instead of an "Accounts" and an "MFA" group, and Django's permission groups
# (unused: staff are superusers or not) leave the index.
for _model in (EmailAddress, Authenticator, Group):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)

# --- users ------------------------------------------------------------------------------


class UserCreationAdminForm(AdminUserCreationForm[User]):
    class Meta(auth_forms.AdminUserCreationForm.Meta):
        model = User
        fields = ("email",)


class UserChangeAdminForm(UserChangeForm[User]):
    class Meta(auth_forms.UserChangeForm.Meta):
        model = User
        fields = "__all__"


class EmailAddressInline(TabularInline[EmailAddress, User]):
    model = EmailAddress
    extra = 0
    fields = ("email", "verified", "primary")
    verbose_name_plural = "email addresses"


class AuthenticatorInline(TabularInline[Authenticator, User]):
    """A user's second factors, to see whether they have one and to reset a lost one.

    Read-only: the secret (`data`) is never shown, and a factor is only set up by its
    user scanning the code. Deleting one is the reset an operator does for a lost phone;
    the user (staff included, by StaffMfaMiddleware) then sets up a new one.
    """

    model = Authenticator
    extra = 0
    fields = ("type", "created_at", "last_used_at")
    readonly_fields = fields
    verbose_name_plural = "two-factor authenticators"

    def has_add_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        return False


class UserMembershipInline(TabularInline[Membership, User]):
    model = Membership
    fk_name = "user"
    extra = 0
    fields = ("organization", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("organization",)
    verbose_name_plural = "organizations"


@admin.register(User)
class UserAdmin(DjangoUserAdmin[User]):
    """Django's UserAdmin with the email address in place of a username."""

    form = UserChangeAdminForm
    add_form = UserCreationAdminForm
    list_display = (
        "email",
        "first_name",
        "last_name",
        "is_staff",
        "is_active",
        "date_joined",
        "last_login",
    )
    list_filter = ("is_staff", "is_superuser", "is_active", "date_joined", "last_login")
    search_fields = ("email", "first_name", "last_name")
    ordering = ("email",)
    date_hierarchy = "date_joined"
    inlines = (EmailAddressInline, AuthenticatorInline, UserMembershipInline)
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Name", {"fields": ("first_name", "last_name")}),
        (
            "Permissions",
            {
                "fields": ("is_active", "is_staff", "is_superuser", "user_permissions"),
                "classes": ("collapse",),
            },
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "usable_password", "password1", "password2"),
            },
        ),
    )
    readonly_fields = ("last_login", "date_joined")

    def get_inlines(
        self, request: HttpRequest, obj: User | None
    ) -> tuple[type[InlineModelAdmin[Any, Any]], ...]:
        # A user being added has no memberships yet; the add form stays email and password.
        return self.inlines if obj is not None else ()


# --- memberships (the organization's own page is billing.admin_customers) ---------------


@admin.register(Membership)
class MembershipAdmin(ModelAdmin[Membership]):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role", "created_at")
    list_select_related = ("user", "organization")
    search_fields = ("user__email", "organization__name", "organization__slug")
    autocomplete_fields = ("user", "organization")
    readonly_fields = ("created_at",)


# --- invitations ------------------------------------------------------------------------


class InvitationStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(
        self, request: HttpRequest, model_admin: ModelAdmin[Invitation]
    ) -> list[tuple[str, str]]:
        return [(s, s) for s in ("pending", "accepted", "revoked", "expired")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Invitation]
    ) -> QuerySet[Invitation]:
        now = timezone.now()
        open_ = Q(accepted_at__isnull=True, revoked_at__isnull=True)
        filters = {
            "pending": open_ & Q(expires_at__gt=now),
            "accepted": Q(accepted_at__isnull=False),
            "revoked": Q(revoked_at__isnull=False, accepted_at__isnull=True),
            "expired": open_ & Q(expires_at__lte=now),
        }
        condition = filters.get(self.value() or "")
        return queryset.filter(condition) if condition is not None else queryset


def invitation_status(invitation: Invitation) -> str:
    if invitation.accepted_at is not None:
        return "accepted"
    if invitation.revoked_at is not None:
        return "revoked"
    return "pending" if invitation.is_pending else "expired"


@admin.register(Invitation)
class InvitationAdmin(ModelAdmin[Invitation]):
    list_display = ("email", "organization", "role", "status", "invited_by", "created_at")
    list_filter = (InvitationStatusFilter, "role", "created_at")
    list_select_related = ("organization", "invited_by")
    search_fields = ("email", "organization__name", "invited_by__email")
    date_hierarchy = "created_at"
    fields = (
        "organization",
        "email",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_by",
        "revoked_at",
    )
    readonly_fields = (
        "organization",
        "email",
        "invited_by",
        "created_at",
        "accepted_at",
        "accepted_by",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Invitations are sent from the team page, which mails the signed link.
        return False

    @admin.display(description="status")
    def status(self, invitation: Invitation) -> str:
        return invitation_status(invitation)


# --- API keys ---------------------------------------------------------------------------


class ApiKeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(
        self, request: HttpRequest, model_admin: ModelAdmin[ApiKey]
    ) -> list[tuple[str, str]]:
        return [(s, s) for s in ("active", "revoked", "expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        now = timezone.now()
        filters = {
            "active": api_key_active_q(now=now),
            "revoked": Q(revoked_at__isnull=False),
            "expired": Q(revoked_at__isnull=True, expires_at__lte=now),
        }
        condition = filters.get(self.value() or "")
        return queryset.filter(condition) if condition is not None else queryset


@admin.register(ApiKey)
class ApiKeyAdmin(ModelAdmin[ApiKey]):
    list_display = (
        "name",
        "masked_key",
        "organization",
        "status",
        "scope_list",
        "created_by",
        "created_at",
        "last_used_at",
        "expires_at",
    )
    list_filter = (ApiKeyStatusFilter, ("organization", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("organization", "created_by")
    search_fields = ("name", "prefix", "organization__name", "organization__slug")
    date_hierarchy = "created_at"
    actions = ("revoke_selected", "revoke_selected_and_created")
    # key_hash is deliberately in neither list: it is a credential verifier, and an
    # editable hash would let anyone with admin access mint a key of their choosing.
    fields = (
        "organization",
        "name",
        "masked_key",
        "scope_list",
        "created_by",
        "created_by_key",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    # Scopes are read-only here: widening a customer's key is theirs to decide, and
    # they can narrow by creating a new key and revoking this one.
    readonly_fields = (
        "organization",
        "masked_key",
        "scope_list",
        "created_by",
        "created_by_key",
        "created_at",
        "revoked_at",
        "last_used_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A key made here would have no safe way to reach its owner; customers create
        # keys on the API keys page or through the API, where it is shown once.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        # Revoke instead: deleting would erase which key did what in the audit log.
        return False

    @admin.display(description="key", ordering="prefix")
    def masked_key(self, api_key: ApiKey) -> str:
        return api_key.masked

    @admin.display(description="status")
    def status(self, api_key: ApiKey) -> str:
        return api_key_status(api_key=api_key)

    @admin.display(description="scopes")
    def scope_list(self, api_key: ApiKey) -> str:
        return ", ".join(api_key.scopes)

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for api_key in queryset.select_related("organization").filter(revoked_at__isnull=True):
            api_key_revoke(
                api_key=api_key,
                actor=signed_in_user(request),
                ip_address=client_ip(request),
            )
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)

    @admin.action(
        description="Revoke selected keys and the keys they created", permissions=["change"]
    )
    def revoke_selected_and_created(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for api_key in queryset.select_related("organization"):
            revoked += len(
                api_key_revoke(
                    api_key=api_key,
                    actor=signed_in_user(request),
                    ip_address=client_ip(request),
                    include_created=True,
                )
            )
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)


# --- audit log --------------------------------------------------------------------------


@admin.register(AuditLog)
class AuditLogAdmin(ModelAdmin[AuditLog]):
    """Read-only: an audit trail an operator could edit would prove nothing."""

    list_display = ("created_at", "action", "organization", "actor", "actor_api_key", "target")
    list_filter = ("action", "created_at")
    list_select_related = ("organization", "actor", "actor_api_key")
    search_fields = ("target", "actor__email", "organization__name", "ip_address")
    date_hierarchy = "created_at"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditLog | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditLog | None = None) -> bool:
        return False
