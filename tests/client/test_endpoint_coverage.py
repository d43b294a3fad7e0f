"""The client has a method for every operation the API serves under /api/v1/: a new
endpoint fails here until the client (and its README) covers it."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver
from drf_spectacular.generators import SchemaGenerator
from quantsaas_client import Client

from quantsaas.urls import api_v1

# (method, path as the OpenAPI document writes it) -> the Client method that calls it.
OPERATIONS = {
    ("get", "/api/v1/exchanges"): "exchanges",
    ("get", "/api/v1/instruments"): "instruments",
    ("get", "/api/v1/markets/{exchange}/{symbol}/ticker"): "ticker",
    ("get", "/api/v1/markets/{exchange}/{symbol}/trades"): "trades",
    ("get", "/api/v1/markets/{exchange}/{symbol}/candles"): "candles",
    ("get", "/api/v1/markets/{exchange}/{symbol}/book"): "book",
    ("get", "/api/v1/markets/consolidated/{pair}/bbo"): "consolidated_bbo",
    ("get", "/api/v1/markets/consolidated/{pair}/book"): "consolidated_book",
    ("get", "/api/v1/analytics/{exchange}/{symbol}/ofi"): "ofi",
    ("get", "/api/v1/analytics/{exchange}/{symbol}/vpin"): "vpin",
    ("get", "/api/v1/analytics/{exchange}/{symbol}/volatility"): "volatility",
    ("post", "/api/v1/options/price"): "price_options",
    ("post", "/api/v1/options/implied-volatility"): "implied_volatilities",
    ("get", "/api/v1/backtests"): "backtests",
    ("post", "/api/v1/backtests"): "submit_backtest",
    ("get", "/api/v1/backtests/{id}"): "backtest",
    ("get", "/api/v1/keys"): "api_keys",
    ("post", "/api/v1/keys"): "create_api_key",
    ("delete", "/api/v1/keys/{api_key_id}"): "revoke_api_key",
    ("get", "/api/v1/usage"): "usage",
    ("get", "/api/v1/alerts"): "alerts",
    ("post", "/api/v1/alerts"): "create_alert",
    ("get", "/api/v1/alerts/{rule_id}"): "alert",
    ("patch", "/api/v1/alerts/{rule_id}"): "update_alert",
    ("delete", "/api/v1/alerts/{rule_id}"): "delete_alert",
    ("get", "/api/v1/alerts/deliveries"): "alert_deliveries",
    ("get", "/api/v1/alerts/webhook-secret"): "webhook_secret",
    ("post", "/api/v1/alerts/webhook-secret"): "rotate_webhook_secret",
}
# Served under /api/v1/ but not operations of the OpenAPI document: the documents.
DOCUMENTS = {"schema/": "schema", "asyncapi.json": "asyncapi"}
METHODS = ("get", "post", "put", "patch", "delete")


def _routes(patterns: list[URLPattern | URLResolver], prefix: str = "") -> list[str]:
    routes = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            routes += _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            routes.append(prefix + str(pattern.pattern))
    return routes


def test_every_operation_of_the_api_has_a_client_method():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    served = {
        (method, path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in METHODS
    }

    assert served == set(OPERATIONS)
    routes = _routes(api_v1)
    assert set(DOCUMENTS) <= set(routes)
    assert len(routes) == len({path for _, path in OPERATIONS}) + len(DOCUMENTS)
    for name in [*OPERATIONS.values(), *DOCUMENTS.values()]:
        assert callable(getattr(Client, name, None)), name
