"""Seed the three starting plans. Values are copied here (not imported) so this
migration keeps meaning the same thing whatever the code says later."""

from django.db import migrations

PLANS = [
    {
        "code": "free",
        "name": "Free",
        "description": "Delayed data to try the API and the dashboard.",
        "price_cents": 0,
        "requests_per_minute": 60,
        "ws_connections": 1,
        "ws_subscriptions": 5,
        "stream_delay_seconds": 900,
        "history_days": 7,
        "api_keys": 1,
        "analytics": True,
        "backtests_per_day": 5,
    },
    {
        "code": "pro",
        "name": "Pro",
        "description": "Real-time streams, a year of history, analytics for a trading desk.",
        "price_cents": 4900,
        "requests_per_minute": 1200,
        "ws_connections": 5,
        "ws_subscriptions": 50,
        "stream_delay_seconds": 0,
        "history_days": 365,
        "api_keys": 10,
        "analytics": True,
        "backtests_per_day": 100,
    },
    {
        "code": "enterprise",
        "name": "Enterprise",
        "description": "Full history and high limits for funds and research teams.",
        "price_cents": 49900,
        "requests_per_minute": 12000,
        "ws_connections": 50,
        "ws_subscriptions": 500,
        "stream_delay_seconds": 0,
        "history_days": None,
        "api_keys": 100,
        "analytics": True,
        "backtests_per_day": 1000,
    },
]


def seed(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for values in PLANS:
        Plan.objects.update_or_create(code=values["code"], defaults=values)


def unseed(apps, schema_editor):
    apps.get_model("billing", "Plan").objects.filter(
        code__in=[p["code"] for p in PLANS], subscriptions__isnull=True, overrides__isnull=True
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
