from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.models import ApiKey, AuditLog, Organization, User


def audit_log_record(
    *,
    organization: Organization,
    action: str,
    actor: User | None = None,
    actor_api_key: ApiKey | None = None,
    target: str = "",
    details: dict[str, Any] | None = None,
    ip_address: str | None = None,
) -> AuditLog:
    return AuditLog.objects.create(
        organization=organization,
        action=action,
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_api_key=actor_api_key,
        target=target,
        details=details or {},
        ip_address=ip_address,
    )


def client_ip(request: HttpRequest) -> str | None:
    """The address recorded in audit rows (the proxy in front sets REMOTE_ADDR)."""
    return request.META.get("REMOTE_ADDR") or None
