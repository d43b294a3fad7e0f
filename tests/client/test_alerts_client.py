"""The client manages alert rules against the real API served by daphne."""

from __future__ import annotations

import pytest
from quantsaas_client import Client, PlanRequired

from accounts.services.api_keys import api_key_create
from tests.e2e.stream_servers import WebProcess, running

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_client_creates_lists_and_deletes_alert_rules(alice, acme, tmp_path):
    key = api_key_create(
        organization=acme, created_by=alice, name="alerts", scopes=["read", "trade-analytics"]
    ).raw_key
    web = WebProcess(logs=tmp_path)
    with running(web), Client(key, base_url=web.http) as client:
        created = client.create_alert(
            kind="price", exchange="sim", symbol="BTC-USD", direction="above", threshold=70_000
        )
        assert created["symbol"] == "BTC-USD" and created["cooldown_seconds"] == 60
        assert [r["id"] for r in client.alerts()] == [created["id"]]
        for level in (1, 2):
            client.create_alert(
                kind="price", exchange="sim", symbol="BTC-USD", direction="below", threshold=level
            )
        with pytest.raises(PlanRequired):  # the free plan keeps three
            client.create_alert(kind="feed_down", exchange="sim")

        client.delete_alert(created["id"])

        assert created["id"] not in [r["id"] for r in client.alerts()]
