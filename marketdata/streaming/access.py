"""Who is on the other end of a stream connection, and may they still be there.

Sync functions (database); the consumer and the hub call them through
``sync_to_async``. The organization's plan comes from billing.entitlements, the
one place that derives it; saving a subscription or override invalidates its
cache, so the periodic re-check (streaming/recheck.py) sees a downgrade within
RECHECK_SECONDS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from accounts.api.authentication import raw_key_from_headers
from accounts.models import ApiKey, Membership, Organization, User
from accounts.selectors import organization_for_user
from accounts.services.api_keys import ApiKeyError, api_key_authenticate
from billing.entitlements import Entitlements, entitlements_for

CLOSE_NOT_AUTHENTICATED = 4001
CLOSE_PLAN = 4003


@dataclass(frozen=True)
class StreamPrincipal:
    organization_id: int
    entitlements: Entitlements
    api_key_id: int | None = None
    user_id: int | None = None
    session_key: str | None = None  # a browser's session: the stream ends with it


def handshake_key(scope: dict[str, Any]) -> str | None:
    """The API key sent on the handshake (Authorization: Bearer, or X-API-Key)."""
    wanted = {b"authorization": "Authorization", b"x-api-key": "X-API-Key"}
    headers = {
        wanted[name.lower()]: value.decode("latin-1")
        for name, value in scope.get("headers", ())
        if name.lower() in wanted
    }
    return raw_key_from_headers(headers)


class ScopeMissing(Exception):
    """The key is valid but may not read market data."""


STREAM_SCOPE = "read"


def principal_from_key(*, raw_key: str) -> StreamPrincipal:
    """Raises ApiKeyError (message safe to show) for unknown, revoked or expired keys,
    ScopeMissing for a key without the `read` scope."""
    api_key = api_key_authenticate(raw_key=raw_key)
    if not api_key.has_scope(STREAM_SCOPE):
        raise ScopeMissing(f"This API key lacks the `{STREAM_SCOPE}` scope the stream needs.")
    return StreamPrincipal(
        organization_id=api_key.organization_id,
        entitlements=entitlements_for(organization=api_key.organization),
        api_key_id=api_key.pk,
    )


def principal_from_session(
    *,
    user: User | AnonymousUser | None,
    organization_id: int | None,
    session_key: str | None = None,
) -> StreamPrincipal | None:
    """The signed-in user acting in their current organization (validated membership)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    membership = organization_for_user(user=user, organization_id=organization_id)
    if membership is None:
        return None
    return StreamPrincipal(
        organization_id=membership.organization_id,
        entitlements=entitlements_for(organization=membership.organization),
        user_id=user.pk,
        session_key=session_key,
    )


def sessions_ended(held: dict[str, Held]) -> set[str]:
    """Connections whose browser session is over: logged out, flushed, expired, or signed
    with a password that has changed since (Django's session auth hash no longer matches)."""
    from django.conf import settings
    from django.contrib.auth import HASH_SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.base import SessionBase
    from django.utils.crypto import constant_time_compare
    from django.utils.module_loading import import_string

    store_class: type[SessionBase] = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    by_session = {h.session_key: conn_id for conn_id, h in held.items() if h.session_key}
    if not by_session:
        return set()
    users = get_user_model().objects.in_bulk(
        {h.user_id for h in held.values() if h.session_key and h.user_id}
    )
    ended = set()
    for session_key, conn_id in by_session.items():
        session = store_class(session_key)
        data = session.load()  # an empty dict once the session is gone or expired
        user = users.get(held[conn_id].user_id)
        if (
            not data
            or user is None
            or not constant_time_compare(
                data.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()
            )
        ):
            ended.add(conn_id)
    return ended


@dataclass(frozen=True)
class Held:
    """What an open connection holds, for the re-check."""

    organization_id: int
    api_key_id: int | None
    user_id: int | None
    delay_seconds: int
    uses_analytics: bool
    session_key: str | None = None


@dataclass(frozen=True)
class Recheck:
    closing: dict[str, tuple[int, str]]  # connection id -> (close code, reason)
    plans: dict[int, Entitlements]  # organization id -> what it may do now


def principals_recheck(*, held: dict[str, Held]) -> Recheck:
    """Connections to close now, with close code and reason, and each plan, in a few queries.

    A revoked or expired key, or a user no longer a member, loses the stream (4001).
    A plan that no longer allows what the connection is (real time) or holds
    (analytics) closes it with 4003; the client reconnects and gets what the new
    plan allows. The plan's counted limits (connections, subscriptions) are
    re-applied by the caller from `plans` without closing more than they must.
    """
    closing: dict[str, tuple[int, str]] = {}
    now = timezone.now()
    key_ids = {h.api_key_id for h in held.values() if h.api_key_id is not None}
    dead_keys = set(
        ApiKey.objects.filter(pk__in=key_ids).inactive(now=now).values_list("pk", flat=True)
    )
    dead_keys |= key_ids - set(ApiKey.objects.filter(pk__in=key_ids).values_list("pk", flat=True))
    pairs = {(h.user_id, h.organization_id) for h in held.values() if h.user_id is not None}
    members = set(
        Membership.objects.filter(
            user_id__in={u for u, _ in pairs},
            organization_id__in={o for _, o in pairs},
            user__is_active=True,
        ).values_list("user_id", "organization_id")
    )
    organizations = Organization.objects.in_bulk({h.organization_id for h in held.values()})
    plans = {pk: entitlements_for(organization=org) for pk, org in organizations.items()}
    ended = sessions_ended(held)
    for conn_id, h in held.items():
        if conn_id in ended:
            closing[conn_id] = (CLOSE_NOT_AUTHENTICATED, "Signed out.")
            continue
        if h.api_key_id in dead_keys:
            closing[conn_id] = (CLOSE_NOT_AUTHENTICATED, "API key revoked or expired.")
            continue
        if h.user_id is not None and (h.user_id, h.organization_id) not in members:
            closing[conn_id] = (CLOSE_NOT_AUTHENTICATED, "No longer a member.")
            continue
        plan = plans.get(h.organization_id)
        if plan is None:
            closing[conn_id] = (CLOSE_NOT_AUTHENTICATED, "Organization deleted.")
        elif plan.stream_delay_seconds > h.delay_seconds:
            closing[conn_id] = (CLOSE_PLAN, "Plan changed: the stream is now delayed.")
        elif h.uses_analytics and not plan.analytics:
            closing[conn_id] = (CLOSE_PLAN, "Plan changed: analytics not included.")
    return Recheck(closing=closing, plans=plans)


__all__ = [
    "CLOSE_NOT_AUTHENTICATED",
    "CLOSE_PLAN",
    "ApiKeyError",
    "Held",
    "Recheck",
    "ScopeMissing",
    "StreamPrincipal",
    "handshake_key",
    "principal_from_key",
    "principal_from_session",
    "principals_recheck",
]
