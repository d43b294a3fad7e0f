"""The periodic re-check of open connections: keys, memberships and the plan.

Every RECHECK_SECONDS (hub.py) each process hands its open connections here in
one batch; nothing here runs per message.

- Keys, memberships, real time, analytics: ``access.principals_recheck`` (a few
  database queries; the plan from billing's cache, which a plan change
  invalidates) names the connections to close with 4001 or 4003.
- Connections per organization: when the plan now allows fewer connections than
  a local connection was admitted under, one Redis call per such organization
  (``slots.beyond``) names the slots past the new limit in admission order. Every
  process gets the same answer from the shared set, closes with 4008 the ones it
  holds, and leaves the rest to their own processes. The oldest connections,
  most likely the customer's long-running consumers, stay open.
- Subscriptions per connection: the connection keeps its oldest subscriptions up
  to the new limit; the newest beyond it are dropped and the client gets a
  ``quota_exceeded`` error naming them. The connection stays open.
- Book depth and conflation floor: later ``subscribe`` messages are held to the
  new plan's; subscriptions already held keep their depth and ``conflate_ms``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from billing.entitlements import Entitlements
from marketdata.streaming import frames
from marketdata.streaming.access import Held, principals_recheck
from marketdata.streaming.connection import Connection
from marketdata.streaming.protocol import ANALYTICS_KINDS, channel_kind
from marketdata.streaming.quotas import CLOSE_QUOTA, gather_bounded
from quantsaas.db import in_db_thread

if TYPE_CHECKING:
    from marketdata.streaming.hub import Hub

logger = logging.getLogger(__name__)

# Connection -> (close code, reason, an error frame sent ahead of the close or None).
Verdicts = dict[Connection, tuple[int, str, str | None]]


async def connections_recheck(hub: Hub, connections: list[Connection]) -> Verdicts:
    """The connections to close now, with close code and reason; trims subscriptions."""
    open_ = [c for c in connections if not c.closed]
    if not open_:
        return {}
    held = {
        c.id: Held(
            organization_id=c.organization_id,
            api_key_id=c.api_key_id,
            user_id=c.user_id,
            delay_seconds=c.delay,
            uses_analytics=any(channel_kind(ch) in ANALYTICS_KINDS for ch in c.channels),
            session_key=c.session_key,
        )
        for c in open_
    }
    result = await in_db_thread(principals_recheck)(held=held)
    by_id = {c.id: c for c in open_}
    closing: Verdicts = {
        by_id[conn_id]: (code, reason, None) for conn_id, (code, reason) in result.closing.items()
    }
    staying = [c for c in open_ if c not in closing]
    closing.update(await connections_beyond(hub=hub, connections=staying, plans=result.plans))
    for conn in staying:
        plan = result.plans.get(conn.organization_id)
        if plan is not None and conn not in closing and not conn.closed:
            await subscriptions_trim(hub=hub, conn=conn, plan=plan)
    return closing


async def connections_beyond(
    *, hub: Hub, connections: list[Connection], plans: dict[int, Entitlements]
) -> Verdicts:
    """Local connections whose slots fall past their organization's connection limit.

    Only organizations where some local connection was admitted under a larger
    limit than the plan's are asked about (quotas.py: a slot admitted under a limit
    stays within it), so an unchanged plan costs no Redis call.
    """
    asked: dict[int, list[Connection]] = {}
    for conn in connections:
        plan = plans.get(conn.organization_id)
        if plan is not None and conn.plan_connections > plan.ws_connections:
            asked.setdefault(conn.organization_id, []).append(conn)
    if not asked:
        return {}
    organizations = list(asked)
    answers = await gather_bounded(
        [
            hub.slots.beyond(organization_id=org, limit=plans[org].ws_connections)
            for org in organizations
        ]
    )
    closing: Verdicts = {}
    for org, answer in zip(organizations, answers, strict=True):
        if isinstance(answer, BaseException):
            # Open connections stay until the next round can ask (the channel layer is
            # that same Redis, so nothing is delivered meanwhile anyway).
            logger.warning("stream: connection limit re-check failed: %s", answer)
            continue
        limit = plans[org].ws_connections
        beyond = set(answer)
        for conn in asked[org]:
            if conn.id in beyond:
                message = f"Plan changed: your plan allows {limit} concurrent connections."
                # The same error as a connection refused at the limit gets, then 4008.
                farewell = frames.error(
                    code="quota_exceeded", message=message, details={"limit": limit}
                )
                closing[conn] = (CLOSE_QUOTA, message, farewell)
            else:
                conn.plan_connections = limit
        if beyond:
            logger.info(
                "stream: organization %s over its %s connections after a plan change, "
                "closing %s here (%s in all)",
                org,
                limit,
                sum(1 for conn in asked[org] if conn in closing),
                len(beyond),
            )
    return closing


async def subscriptions_trim(*, hub: Hub, conn: Connection, plan: Entitlements) -> None:
    """Keep `conn` to the plan's subscriptions: drop the newest beyond it, and say so."""
    conn.plan_subscriptions = plan.ws_subscriptions
    conn.analytics_allowed = plan.analytics
    # Later subscribes are checked against these; held subscriptions keep theirs.
    conn.plan_book_depth = plan.book_depth
    conn.conflate_floor_ms = plan.stream_conflate_floor_ms
    limit = plan.ws_subscriptions
    if len(conn.channels) <= limit:
        return
    dropped = conn.channels_by_age()[limit:]
    # Queued before the unsubscribe, with no await between: nothing of the dropped
    # channels follows this frame.
    conn.push(
        frames.error(
            code="quota_exceeded",
            message=f"Plan changed: your plan allows {limit} subscriptions per connection; "
            "the newest were dropped.",
            details={"limit": limit, "subscribed": limit, "channels": dropped},
        )
    )
    await hub.unsubscribe(conn, dropped)
