"""Creating, revoking and authenticating API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.api_keys import (
    DISPLAY_PREFIX_LENGTH,
    key_generate,
    key_hash,
    key_hash_matches,
    key_looks_valid,
)
from accounts.models import ApiKey, AuditLog, Organization, User
from accounts.services.audit import audit_log_record

LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class CreatedApiKey:
    """The only moment the raw key exists outside the caller's hands."""

    api_key: ApiKey
    raw_key: str


class ApiKeyError(Exception):
    """Why a presented key was refused; the message is safe to show the caller."""


@transaction.atomic
def api_key_create(
    *,
    organization: Organization,
    created_by: User | None,
    name: str = "",
    expires_at: datetime | None = None,
    ip_address: str | None = None,
) -> CreatedApiKey:
    raw_key = key_generate()
    api_key = ApiKey.objects.create(
        organization=organization,
        name=name,
        key_hash=key_hash(raw_key),
        prefix=raw_key[:DISPLAY_PREFIX_LENGTH],
        last_four=raw_key[-4:],
        created_by=created_by,
        expires_at=expires_at,
    )
    audit_log_record(
        organization=organization,
        action=AuditLog.Action.KEY_CREATED,
        actor=created_by,
        target=api_key.masked,
        details={"api_key_id": api_key.pk, "name": name},
        ip_address=ip_address,
    )
    return CreatedApiKey(api_key=api_key, raw_key=raw_key)


@transaction.atomic
def api_key_revoke(
    *,
    api_key: ApiKey,
    actor: User | None,
    actor_api_key: ApiKey | None = None,
    ip_address: str | None = None,
) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        audit_log_record(
            organization=api_key.organization,
            action=AuditLog.Action.KEY_REVOKED,
            actor=actor,
            actor_api_key=actor_api_key,
            target=api_key.masked,
            details={"api_key_id": api_key.pk, "name": api_key.name},
            ip_address=ip_address,
        )
    return api_key


def api_key_authenticate(*, raw_key: str) -> ApiKey:
    """The active key for `raw_key`, or ApiKeyError saying why not."""
    if not key_looks_valid(raw_key):
        raise ApiKeyError("Invalid API key.")
    digest = key_hash(raw_key)
    api_key = ApiKey.objects.select_related("organization").filter(key_hash=digest).first()
    # The lookup is by hash; the constant-time compare guards against a backend
    # that matched loosely (collation, trailing spaces) ever letting a near-miss in.
    if api_key is None or not key_hash_matches(raw_key, api_key.key_hash):
        raise ApiKeyError("Invalid API key.")
    if api_key.revoked_at is not None:
        raise ApiKeyError("This API key has been revoked.")
    if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
        raise ApiKeyError("This API key has expired.")
    api_key_touch(api_key=api_key)
    return api_key


def api_key_touch(*, api_key: ApiKey) -> None:
    """Record use at most once a minute: a hot key must not write on every request."""
    now = timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    # The condition is repeated in SQL so concurrent requests write once between them.
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ApiKey.objects.filter(stale, pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now
