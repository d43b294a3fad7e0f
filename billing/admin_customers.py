"""The organization's admin page as its customer sees it: plan, usage, keys, members.

It lives in billing, not accounts, because the plan and usage it shows are billing's
and accounts sits below billing (docs/architecture.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString

from accounts.models import Membership, Organization, api_key_active_q
from billing.admin_overview import PlanFilter, audit_overview, keys_overview, plan_overview
from billing.entitlements import entitlements_for
from quantsaas.admin_generics import ModelAdmin, TabularInline

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec


class MembershipInline(TabularInline[Membership, Organization]):
    model = Membership
    fk_name = "organization"
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)


@admin.register(Organization)
class OrganizationAdmin(ModelAdmin[Organization]):
    """The organization as its customer sees it: plan, usage, keys, members, history."""

    list_display = (
        "name",
        "slug",
        "plan",
        "is_personal",
        "member_count",
        "active_key_count",
        "created_at",
    )
    list_filter = (PlanFilter, "is_personal", "created_at")
    search_fields = ("name", "slug", "memberships__user__email")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at", "customer_plan", "customer_keys", "customer_audit")
    date_hierarchy = "created_at"
    inlines = (MembershipInline,)
    fieldsets = (
        (None, {"fields": ("name", "slug", "is_personal", "created_at")}),
        ("Plan and usage", {"fields": ("customer_plan",)}),
        ("API keys", {"fields": ("customer_keys",)}),
        ("Recent audit entries", {"fields": ("customer_audit",)}),
    )

    def get_fieldsets(self, request: HttpRequest, obj: Organization | None = None) -> _FieldsetSpec:
        # A new organization has no plan, keys or history to show yet.
        return self.fieldsets if obj is not None else ((None, {"fields": ("name", "slug")}),)

    @admin.display(description="plan")
    def plan(self, organization: Organization) -> str:
        return entitlements_for(organization=organization).plan_name

    @admin.display(description="plan and usage")
    def customer_plan(self, organization: Organization) -> SafeString:
        return plan_overview(organization)

    @admin.display(description="keys")
    def customer_keys(self, organization: Organization) -> SafeString:
        return keys_overview(organization)

    @admin.display(description="audit")
    def customer_audit(self, organization: Organization) -> SafeString:
        return audit_overview(organization)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Organization]:
        # Counted in the one list query; distinct because the two joins multiply rows.
        return (
            super()
            .get_queryset(request)
            .annotate(
                _member_count=Count("memberships", distinct=True),
                _active_key_count=Count(
                    "api_keys", filter=api_key_active_q(through="api_keys__"), distinct=True
                ),
            )
        )

    @admin.display(description="members", ordering="_member_count")
    def member_count(self, organization: Organization) -> int:
        count: int = organization._member_count  # type: ignore[attr-defined]  # get_queryset's annotate
        return count

    @admin.display(description="active keys", ordering="_active_key_count")
    def active_key_count(self, organization: Organization) -> int:
        count: int = organization._active_key_count  # type: ignore[attr-defined]  # get_queryset's annotate
        return count
