"""Creating, revoking and authenticating API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.allowances import plan_allowances
from accounts.api_key_cache import api_key_cache_forget, api_key_cache_store, api_key_cached
from accounts.api_keys import (
    DISPLAY_PREFIX_LENGTH,
    key_generate,
    key_hash,
    key_hash_matches,
    key_looks_valid,
)
from accounts.models import (
    ApiKey,
    ApiKeyScope,
    AuditLog,
    Organization,
    User,
    api_key_scopes_default,
    api_key_scopes_normalize,
)
from accounts.services.audit import audit_log_record
from quantsaas.cache import LocalCache

LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyStatus:
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True)
class CreatedApiKey:
    """The only moment the raw key exists outside the caller's hands."""

    api_key: ApiKey
    raw_key: str


class ApiKeyError(Exception):
    """Why a presented key was refused; the message is safe to show the caller."""


class ApiKeyQuotaExceeded(Exception):
    """The organization's plan allows no more active keys; `plans` name plans that do."""

    def __init__(self, message: str, *, limit: int | None = None, plans: list[str] | None = None):
        super().__init__(message)
        self.limit = limit
        self.plans = plans or []


class ApiKeyExpiryInvalid(ValueError):
    """The requested expiry cannot be used (it is not in the future)."""


class ApiKeyScopesInvalid(ValueError):
    """The requested scopes are unknown or empty."""


class ApiKeyScopeNotHeld(PermissionError):
    """A key tried to grant a scope it does not hold itself."""


def api_key_scopes_check(*, scopes: list[str], actor_api_key: ApiKey | None = None) -> list[str]:
    """The scopes to give a new key, normalised; refused when unknown, empty or escalating.

    A program can only hand out what it holds: a key with `admin` and `read` cannot
    mint a `trade-analytics` key. People (owners, admins) may grant any scope.
    """
    unknown = sorted(set(scopes) - set(ApiKeyScope.values))
    if unknown:
        raise ApiKeyScopesInvalid(
            f"Unknown scope {', '.join(unknown)}; choose from {', '.join(ApiKeyScope.values)}."
        )
    normalized = api_key_scopes_normalize(scopes)
    if not normalized:
        raise ApiKeyScopesInvalid("Give the key at least one scope.")
    if actor_api_key is not None:
        missing = [scope for scope in normalized if not actor_api_key.has_scope(scope)]
        if missing:
            raise ApiKeyScopeNotHeld(
                f"This key cannot grant {', '.join(missing)}: it does not hold "
                f"{'that scope' if len(missing) == 1 else 'those scopes'} itself."
            )
    return normalized


def api_key_quota_check(*, organization: Organization) -> None:
    """Raise ApiKeyQuotaExceeded when the plan allows no more active keys.

    Creation from the API, the web page and anywhere else passes through here, so
    the plan's "API keys allowed" (billing's entitlements, asked through
    accounts.allowances) is enforced in one place.
    """
    allowances = plan_allowances()
    if transaction.get_connection().in_atomic_block:
        # Serialise key creation per organization so two concurrent requests cannot
        # both pass the count and overshoot the allowance.
        Organization.objects.select_for_update().filter(pk=organization.pk).first()
    allowance = allowances.api_keys_allowed(organization=organization)
    active = ApiKey.objects.filter(organization=organization).active().count()
    if active >= allowance:
        raise ApiKeyQuotaExceeded(
            f"Your plan allows {allowance} active API key{'s' if allowance != 1 else ''}; "
            "revoke one or upgrade.",
            limit=allowance,
            plans=allowances.plans_allowing_api_keys(more_than=allowance),
        )


def api_key_expiry_check(*, expires_at: datetime | None) -> None:
    """An expiry must lie in the future: a key born expired is a mistake, not a wish."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ApiKeyExpiryInvalid("The expiry must be in the future.")


def api_key_status(*, api_key: ApiKey, now: datetime | None = None) -> str:
    """One word for the API, the page and the admin: revoked wins over expired."""
    if api_key.revoked_at is not None:
        return ApiKeyStatus.REVOKED
    if api_key.is_expired(now=now):
        return ApiKeyStatus.EXPIRED
    return ApiKeyStatus.ACTIVE


@transaction.atomic
def api_key_create(
    *,
    organization: Organization,
    created_by: User | None,
    name: str = "",
    expires_at: datetime | None = None,
    scopes: list[str] | None = None,
    actor_api_key: ApiKey | None = None,
    ip_address: str | None = None,
) -> CreatedApiKey:
    """Create a key for `organization`; the raw key is returned here and never again.

    Without `scopes` the key reads only (least privilege for a key copied into a
    notebook). A key made by another key (`actor_api_key`) remembers it, so revoking
    the parent can revoke what it created.
    """
    api_key_expiry_check(expires_at=expires_at)
    scopes = api_key_scopes_check(
        scopes=api_key_scopes_default() if scopes is None else scopes, actor_api_key=actor_api_key
    )
    api_key_quota_check(organization=organization)
    raw_key = key_generate()
    api_key = ApiKey.objects.create(
        organization=organization,
        name=name,
        key_hash=key_hash(raw_key),
        prefix=raw_key[:DISPLAY_PREFIX_LENGTH],
        last_four=raw_key[-4:],
        created_by=created_by,
        created_by_key=actor_api_key,
        expires_at=expires_at,
        scopes=scopes,
    )
    audit_log_record(
        organization=organization,
        action=AuditLog.Action.KEY_CREATED,
        actor=created_by,
        actor_api_key=actor_api_key,
        target=api_key.masked,
        details={"api_key_id": api_key.pk, "name": name, "scopes": scopes},
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
    include_created: bool = False,
) -> list[ApiKey]:
    """Revoke at once and for good; revoking twice is harmless and audited once.

    With `include_created`, the keys this key created are revoked too, and theirs in
    turn: a leaked key that minted others is cleaned up in one step. The answer lists
    every key this call revoked (empty when all already were).
    """
    revoked = []
    for target in [api_key, *(_keys_created_by(api_key) if include_created else [])]:
        if _api_key_revoke_one(
            api_key=target, actor=actor, actor_api_key=actor_api_key, ip_address=ip_address
        ):
            revoked.append(target)
    return revoked


def _keys_created_by(api_key: ApiKey) -> list[ApiKey]:
    """Every key created by `api_key` or by one of those, within its organization."""
    found: list[ApiKey] = []
    parents = [api_key.pk]
    while parents:
        children = list(
            ApiKey.objects.select_related("organization").filter(
                organization_id=api_key.organization_id, created_by_key_id__in=parents
            )
        )
        children = [child for child in children if child.pk not in {k.pk for k in found}]
        found.extend(children)
        parents = [child.pk for child in children]
    return found


def _api_key_revoke_one(
    *, api_key: ApiKey, actor: User | None, actor_api_key: ApiKey | None, ip_address: str | None
) -> bool:
    now = timezone.now()
    # A conditional UPDATE, so two concurrent revocations write one timestamp and one audit row.
    revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now)
    if not revoked:
        return False
    api_key.revoked_at = now
    digest = api_key.key_hash
    api_key_cache_forget(digest)
    transaction.on_commit(lambda: api_key_cache_forget(digest))
    audit_log_record(
        organization=api_key.organization,
        action=AuditLog.Action.KEY_REVOKED,
        actor=actor,
        actor_api_key=actor_api_key,
        target=api_key.masked,
        details={"api_key_id": api_key.pk, "name": api_key.name},
        ip_address=ip_address,
    )
    return True


def api_key_authenticate(*, raw_key: str) -> ApiKey:
    """The active key for `raw_key`, or ApiKeyError saying why not."""
    if not key_looks_valid(raw_key):
        raise ApiKeyError("Invalid API key.")
    digest = key_hash(raw_key)
    api_key = api_key_cached(digest)
    if api_key is None:
        api_key = ApiKey.objects.select_related("organization").filter(key_hash=digest).first()
        if api_key is not None:
            api_key_cache_store(api_key)
    # The lookup is by hash; the constant-time compare guards against a backend
    # that matched loosely (collation, trailing spaces) ever letting a near-miss in.
    if api_key is None or not key_hash_matches(raw_key, api_key.key_hash):
        raise ApiKeyError("Invalid API key.")
    if api_key.revoked_at is not None:
        raise ApiKeyError("This API key has been revoked.")
    if api_key.is_expired():
        raise ApiKeyError("This API key has expired.")
    api_key_touch(api_key=api_key)
    return api_key


# When this process last recorded each key's use. A cached key's `last_used_at` is as
# old as the cache entry, so without this every request would try the write again.
_touched = LocalCache(seconds=LAST_USED_RESOLUTION.total_seconds(), max_entries=100_000)


def api_key_touch(*, api_key: ApiKey) -> None:
    """Record use at most once a minute: a hot key must not write on every request."""
    now = timezone.now()
    last_used = max(filter(None, [api_key.last_used_at, _touched.get(api_key.pk)]), default=None)
    if last_used is not None and now - last_used < LAST_USED_RESOLUTION:
        return
    # The condition is repeated in SQL so concurrent requests write once between them.
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ApiKey.objects.filter(stale, pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now
    _touched.set(api_key.pk, now)
