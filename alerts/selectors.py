"""Reads of alert data. Every tenant read takes the organization explicitly."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Max, QuerySet

from accounts.models import Organization
from alerts.evaluator import Rule
from alerts.models import AlertDelivery, AlertRule, AlertWebhookSecret


def alert_rules_for(*, organization: Organization) -> QuerySet[AlertRule]:
    return AlertRule.objects.filter(organization=organization).select_related(
        "exchange", "instrument"
    )


def alert_rule_get(*, organization: Organization, rule_id: int) -> AlertRule | None:
    """Another organization's rule is indistinguishable from one that does not exist."""
    return alert_rules_for(organization=organization).filter(pk=rule_id).first()


def alert_rules_count(*, organization: Organization) -> int:
    return AlertRule.objects.filter(organization=organization).count()


def alert_deliveries_for(
    *, organization: Organization, rule_id: int | None = None, limit: int = 100
) -> list[AlertDelivery]:
    deliveries = AlertDelivery.objects.filter(organization=organization).select_related("firing")
    if rule_id is not None:
        deliveries = deliveries.filter(firing__rule_id=rule_id)
    return list(deliveries.order_by("-created_at", "-pk")[:limit])


def alert_webhook_secret_get(*, organization: Organization) -> str | None:
    row = AlertWebhookSecret.objects.filter(organization=organization).first()
    return row.secret if row else None


# --- the feed runner's reads (global: the evaluator serves every organization) ------------


def _enabled(exchanges: list[str]) -> QuerySet[AlertRule]:
    return AlertRule.objects.filter(enabled=True, exchange_id__in=exchanges)


def active_rules_signature(*, exchanges: list[str]) -> tuple[int, datetime | None, int | None]:
    """Changes whenever a rule is added, edited or deleted: a reload is needed only then."""
    found = _enabled(exchanges).aggregate(n=Count("id"), changed=Max("updated_at"), top=Max("id"))
    return (found["n"], found["changed"], found["top"])


def active_rules(*, exchanges: list[str], symbols: set[tuple[str, str]]) -> list[Rule]:
    """The enabled rules on these venues, for the instruments (exchange, ccxt symbol) given."""
    rows = _enabled(exchanges).values_list(
        "id",
        "organization_id",
        "kind",
        "exchange_id",
        "instrument__ccxt_symbol",
        "direction",
        "threshold",
        "window_seconds",
        "cooldown_seconds",
        "name",
        "last_fired_at",
    )
    rules = []
    for row in rows:
        rid, org, kind, exchange, symbol, direction, threshold, window, cooldown, name, last = row
        if kind != "feed_down" and (exchange, symbol) not in symbols:
            continue  # another shard's instrument
        rules.append(
            Rule(
                id=rid,
                organization_id=org,
                kind=kind,
                exchange=exchange,
                symbol=symbol or "",
                direction=direction or "above",
                threshold=threshold or 0.0,
                window_seconds=window,
                cooldown_ms=cooldown * 1000,
                name=name,
                last_fired_ms=int(last.timestamp() * 1000) if last else 0,
            )
        )
    return rules
