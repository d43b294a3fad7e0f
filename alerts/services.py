"""Writes of alert data: rules (plan-limited, audited), the webhook secret, firings.

The API, the web page and the admin all come through here, so a rule is checked the
same way wherever it is made.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, AuditLog, Organization, User
from accounts.services.audit import audit_log_record
from alerts.evaluator import MAX_WINDOW_SECONDS
from alerts.models import (
    AlertDelivery,
    AlertFiring,
    AlertKind,
    AlertRule,
    AlertWebhookSecret,
    Direction,
)
from alerts.signing import secret_generate
from billing.entitlements import entitlements_for, plans_allowing
from marketdata.models import Exchange
from marketdata.selectors import instrument_get
from quantsaas.timeutil import ms_to_dt

RULE_CREATED = AuditLog.Action.ALERT_RULE_CREATED
RULE_CHANGED = AuditLog.Action.ALERT_RULE_CHANGED
RULE_DELETED = AuditLog.Action.ALERT_RULE_DELETED
SECRET_ROTATED = AuditLog.Action.ALERT_SECRET_ROTATED
FEED_DOWN_DEFAULT_SECONDS = 30
FEED_DOWN_MIN_SECONDS = 5  # a stream reconnecting after a venue's routine close is not "down"
COOLDOWN_MAX_SECONDS = 7 * 86_400
EDITABLE = (
    "name",
    "kind",
    "exchange",
    "symbol",
    "direction",
    "threshold",
    "window_seconds",
    "cooldown_seconds",
    "enabled",
    "email",
    "webhook_url",
)


class AlertRuleInvalid(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class AlertRuleQuotaExceeded(Exception):
    def __init__(self, message: str, *, plans: list[str]) -> None:
        super().__init__(message)
        self.plans = plans


@dataclass(frozen=True)
class Actor:
    """Who made a change, for the audit row."""

    user: User | None = None
    api_key: ApiKey | None = None
    ip_address: str | None = None


def webhook_url_check(url: str) -> str | None:
    """Why `url` may not receive webhooks, or None. Our workers call it, so it must not
    reach our own network (SSRF): https only, and no private address literal. Names are
    checked again when resolved at delivery time (alerts.delivery)."""
    if not url:
        return None
    parts = urlsplit(url)
    allow_private = settings.ALERTS_WEBHOOK_ALLOW_PRIVATE
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        return "Webhook URLs must use https."
    if not parts.hostname:
        return "The webhook URL has no host."
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        if parts.hostname == "localhost" and not allow_private:
            return "Webhook URLs must be reachable on the public internet."
        return None
    if not address.is_global and not allow_private:
        return "Webhook URLs must be reachable on the public internet."
    return None


def _number(value: Any, field: str, errors: dict[str, str]) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        errors[field] = "Must be a number."
        return None
    if number != number or number in (float("inf"), float("-inf")):
        errors[field] = "Must be a finite number."
        return None
    return number


def _integer(value: Any, field: str, errors: dict[str, str], *, low: int, high: int) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not str(value).strip().lstrip("-").isdigit():
        errors[field] = "Must be a whole number."
        return None
    number = int(value)
    if not low <= number <= high:
        errors[field] = f"Must be between {low:,} and {high:,}."
        return None
    return number


def alert_rule_clean(data: dict[str, Any]) -> dict[str, Any]:
    """The model fields of a rule from its public description, or AlertRuleInvalid naming
    each bad field. Which fields matter depends on the kind (docs/alerts.md)."""
    errors: dict[str, str] = {}
    kind = data.get("kind")
    if kind not in AlertKind.values:
        raise AlertRuleInvalid({"kind": f"Must be one of {', '.join(AlertKind.values)}."})
    exchange = Exchange.objects.filter(pk=data.get("exchange") or "").first()
    if exchange is None:
        errors["exchange"] = "No such exchange."
    out: dict[str, Any] = {
        "kind": kind,
        "exchange": exchange,
        "name": (data.get("name") or "").strip()[:100],
        "enabled": bool(data.get("enabled", True)),
        "email": (data.get("email") or "").strip(),
        "webhook_url": (data.get("webhook_url") or "").strip(),
        "instrument": None,
        "direction": "",
        "threshold": None,
        "window_seconds": 0,
    }
    cooldown = _integer(
        data.get("cooldown_seconds"), "cooldown_seconds", errors, low=0, high=COOLDOWN_MAX_SECONDS
    )
    out["cooldown_seconds"] = 60 if cooldown is None else cooldown
    problem = webhook_url_check(out["webhook_url"])
    if problem:
        errors["webhook_url"] = problem
    if kind == AlertKind.FEED_DOWN:
        window = _integer(
            data.get("window_seconds"),
            "window_seconds",
            errors,
            low=FEED_DOWN_MIN_SECONDS,
            high=MAX_WINDOW_SECONDS,
        )
        out["window_seconds"] = FEED_DOWN_DEFAULT_SECONDS if window is None else window
    else:
        if exchange is not None:
            instrument = instrument_get(exchange_id=exchange.pk, symbol=data.get("symbol") or "")
            if instrument is None:
                errors["symbol"] = "No such instrument on this exchange."
            out["instrument"] = instrument
        if data.get("direction") not in Direction.values:
            errors["direction"] = "Must be `above` or `below`."
        out["direction"] = data.get("direction") or ""
        threshold = _number(data.get("threshold"), "threshold", errors)
        if threshold is None:
            errors.setdefault("threshold", "Required for this kind of rule.")
        elif kind == AlertKind.PRICE and threshold <= 0:
            errors["threshold"] = "A price level must be positive."
        elif kind == AlertKind.PERCENT_MOVE and not 0 < threshold <= 1000:
            errors["threshold"] = "A percent move must be above 0 and at most 1000."
        out["threshold"] = threshold
        if kind == AlertKind.PERCENT_MOVE:
            window = _integer(
                data.get("window_seconds"), "window_seconds", errors, low=1, high=MAX_WINDOW_SECONDS
            )
            if window is None:
                errors.setdefault("window_seconds", "Required for a percent move.")
            out["window_seconds"] = window or 0
    if errors:
        raise AlertRuleInvalid(errors)
    return out


def _quota_check(organization: Organization) -> None:
    allowance = entitlements_for(organization=organization).alert_rules
    # Under a lock on the organization row: concurrent creations cannot overshoot.
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    if AlertRule.objects.filter(organization=organization).count() >= allowance:
        raise AlertRuleQuotaExceeded(
            f"Your plan includes {allowance} alert rules; delete one or upgrade.",
            plans=plans_allowing(predicate=lambda plan: plan.alert_rules > allowance),
        )


def _describe(rule: AlertRule) -> dict[str, Any]:
    return {
        "rule_id": rule.pk,
        "kind": rule.kind,
        "exchange": rule.exchange_id,
        "symbol": rule.instrument.symbol if rule.instrument else None,
        "direction": rule.direction,
        "threshold": rule.threshold,
        "window_seconds": rule.window_seconds,
        "cooldown_seconds": rule.cooldown_seconds,
        "enabled": rule.enabled,
        "email": rule.email,
        "webhook_url": rule.webhook_url,
    }


def _audit(
    organization: Organization, action: str, rule: AlertRule, actor: Actor, **extra: Any
) -> None:
    audit_log_record(
        organization=organization,
        action=action,
        actor=actor.user,
        actor_api_key=actor.api_key,
        target=f"alert rule {rule.pk}: {rule}",
        details={**_describe(rule), **extra},
        ip_address=actor.ip_address,
    )


@transaction.atomic
def alert_rule_create(
    *, organization: Organization, data: dict[str, Any], actor: Actor
) -> AlertRule:
    fields = alert_rule_clean(data)
    _quota_check(organization)
    created_by = actor.user if actor.user is not None and actor.user.is_authenticated else None
    rule = AlertRule.objects.create(organization=organization, created_by=created_by, **fields)
    _audit(organization, RULE_CREATED, rule, actor)
    return rule


def alert_rule_public(rule: AlertRule) -> dict[str, Any]:
    """The rule as its public description (what alert_rule_clean takes)."""
    described = _describe(rule)
    described.pop("rule_id")
    return {"name": rule.name, **described}


@transaction.atomic
def alert_rule_update(*, rule: AlertRule, changes: dict[str, Any], actor: Actor) -> AlertRule:
    merged = {**alert_rule_public(rule), **{k: v for k, v in changes.items() if k in EDITABLE}}
    fields = alert_rule_clean(merged)
    before = _describe(rule)
    for name, value in fields.items():
        setattr(rule, name, value)
    rule.save()
    after = _describe(rule)
    changed = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    _audit(rule.organization, RULE_CHANGED, rule, actor, changed=changed)
    return rule


@transaction.atomic
def alert_rule_delete(*, rule: AlertRule, actor: Actor) -> None:
    _audit(rule.organization, RULE_DELETED, rule, actor)
    rule.delete()


def alert_webhook_secret_ensure(*, organization: Organization) -> str:
    row, _ = AlertWebhookSecret.objects.get_or_create(
        organization=organization, defaults={"secret": secret_generate()}
    )
    return row.secret


@transaction.atomic
def alert_webhook_secret_rotate(*, organization: Organization, actor: Actor) -> str:
    secret = secret_generate()
    AlertWebhookSecret.objects.update_or_create(
        organization=organization, defaults={"secret": secret, "rotated_at": timezone.now()}
    )
    audit_log_record(
        organization=organization,
        action=SECRET_ROTATED,
        actor=actor.user,
        actor_api_key=actor.api_key,
        target="alert webhook secret",
        ip_address=actor.ip_address,
    )
    return secret


# --- the feed runner's writes -------------------------------------------------------------


def alert_firings_record(*, records: list[dict[str, Any]]) -> list[int]:
    """Store firings the runner has already published, with a delivery row per channel of
    their rule, and enqueue the deliveries once committed. Returns the delivery ids.

    A rule deleted meanwhile still gets its firing stored (rule empty), without delivery.
    """
    if not records:
        return []
    with transaction.atomic():
        rules = AlertRule.objects.in_bulk({r["rule_id"] for r in records})
        deliveries: list[AlertDelivery] = []
        for record in records:
            rule = rules.get(record["rule_id"])
            firing = AlertFiring.objects.create(
                organization_id=record["organization_id"],
                rule=rule,
                event_id=record["id"],
                tick_ts=record["tick_ts"],
                fired_at=ms_to_dt(record["fired_ts"]),
                payload=record,
            )
            if rule is None:
                continue
            AlertRule.objects.filter(pk=rule.pk).update(last_fired_at=firing.fired_at)
            targets = [(AlertDelivery.Channel.WEBHOOK, rule.webhook_url)]
            targets.append((AlertDelivery.Channel.EMAIL, rule.email))
            deliveries += [
                AlertDelivery(
                    organization_id=record["organization_id"],
                    firing=firing,
                    channel=channel,
                    target=target,
                )
                for channel, target in targets
                if target
            ]
        AlertDelivery.objects.bulk_create(deliveries)
        ids = [d.pk for d in deliveries]
        if ids:
            from alerts.tasks import alert_delivery_send

            # robust: the firings are committed; a broker hiccup (or, in embedded mode, an
            # eager task's retry) must not make the caller store them again.
            for delivery_id in ids:
                transaction.on_commit(partial(alert_delivery_send.delay, delivery_id), robust=True)
    return ids
