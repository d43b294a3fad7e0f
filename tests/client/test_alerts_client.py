"""The client manages alert rules against the real API served by daphne."""

from __future__ import annotations

import time

import pytest
from quantsaas_client import Client, NotFound, PermissionDenied, PlanRequired

from accounts.services.api_keys import api_key_create
from quantsaas.timeutil import now_ms
from tests.client.test_against_server import wait_for
from tests.e2e.stream_servers import WebProcess, processes, running
from tests.streaming.conftest import plan_grant
from tests.streaming.conftest import sim_market as sim_market  # the fixture, shared

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


def test_the_client_reads_changes_disables_and_enables_a_rule(
    alice, acme, globex, mallory, tmp_path
):
    key = api_key_create(
        organization=acme, created_by=alice, name="alerts", scopes=["read", "trade-analytics"]
    ).raw_key
    other = api_key_create(
        organization=globex, created_by=mallory, name="other", scopes=["read", "trade-analytics"]
    ).raw_key
    web = WebProcess(logs=tmp_path)
    with (
        running(web),
        Client(key, base_url=web.http) as client,
        Client(other, base_url=web.http) as stranger,
    ):
        rule = client.create_alert(
            kind="price", exchange="sim", symbol="BTC-USD", direction="above", threshold=70_000
        )

        changed = client.update_alert(rule["id"], threshold=71_500.5, name="BTC through 71.5k")
        assert (changed["threshold"], changed["name"]) == (71_500.5, "BTC through 71.5k")
        read = client.alert(rule["id"])
        assert (read["threshold"], read["name"], read["direction"]) == (
            71_500.5,
            "BTC through 71.5k",
            "above",  # a field not sent is kept
        )

        assert client.update_alert(rule["id"], enabled=False)["enabled"] is False
        assert client.alert(rule["id"])["enabled"] is False
        assert [r["enabled"] for r in client.alerts()] == [False]
        assert client.update_alert(rule["id"], enabled=True)["enabled"] is True
        assert client.alert(rule["id"])["enabled"] is True

        # Another organization can neither read nor change it.
        with pytest.raises(NotFound):
            stranger.alert(rule["id"])
        with pytest.raises(NotFound):
            stranger.update_alert(rule["id"], enabled=False)
        assert client.alert(rule["id"])["enabled"] is True
        with pytest.raises(NotFound):
            client.alert(rule["id"] + 1000)


def test_the_webhook_secret_is_read_and_rotated_by_an_admin_key_only(alice, acme, tmp_path):
    plan_grant(acme, code="client-secret")  # two keys
    admin = api_key_create(
        organization=acme, created_by=alice, name="admin", scopes=["read", "admin"]
    ).raw_key
    reader = api_key_create(organization=acme, created_by=alice, name="reader").raw_key
    web = WebProcess(logs=tmp_path)
    with (
        running(web),
        Client(admin, base_url=web.http) as client,
        Client(reader, base_url=web.http) as read_only,
    ):
        secret = client.webhook_secret()
        assert len(secret) >= 32 and client.webhook_secret() == secret  # stable until rotated

        rotated = client.rotate_webhook_secret()

        assert rotated != secret and len(rotated) >= 32
        assert client.webhook_secret() == rotated
        with pytest.raises(PermissionDenied):
            read_only.webhook_secret()
        with pytest.raises(PermissionDenied):
            read_only.rotate_webhook_secret()
        assert client.webhook_secret() == rotated


def test_a_firing_shows_in_the_delivery_log(sim_market, alice, acme):
    plan_grant(acme, code="client-alerts", requests_per_minute=6000, alert_rules=5)
    key = api_key_create(
        organization=acme, created_by=alice, name="alerts", scopes=["read", "trade-analytics"]
    ).raw_key
    with processes() as (_, port), Client(key, base_url=f"http://127.0.0.1:{port}") as client:
        assert client.alert_deliveries().to_list() == []

        def last_price() -> float:
            start = now_ms() - 10_000
            trades = wait_for(
                lambda: client.trades("sim", "BTC-USD", start=start).to_list(), 60, "sim trades"
            )
            return round(trades[-1]["price"], 2)

        # Half a tick either side of the last price: the sim's walk soon crosses one, and
        # no trade can sit exactly on it.
        price = last_price()
        rules = {
            direction: client.create_alert(
                kind="price",
                exchange="sim",
                symbol="BTC-USD",
                direction=direction,
                threshold=price + offset,
                cooldown_seconds=0,
                email="desk@acme.test",
            )["id"]
            for direction, offset in (("above", 0.005), ("below", -0.005))
        }
        quiet = client.create_alert(
            kind="price", exchange="sim", symbol="BTC-USD", direction="above", threshold=10**9
        )
        deadline = time.monotonic() + 90
        while not (deliveries := client.alert_deliveries().to_list()):
            assert time.monotonic() < deadline, "no delivery after 90 s"
            time.sleep(3)
            # The walk may have wandered off while the runner loaded the rules: follow it.
            price = last_price()
            client.update_alert(rules["above"], threshold=price + 0.005)
            client.update_alert(rules["below"], threshold=price - 0.005)

        first = deliveries[0]
        fired = first["rule_id"]
        assert fired in rules.values()
        assert (first["channel"], first["target"]) == ("email", "desk@acme.test")
        assert first["status"] in ("pending", "retrying", "delivered", "failed")
        assert first["firing"]["rule_id"] == fired and first["event_id"]
        assert client.alert(fired)["last_fired_at"] is not None
        assert first["id"] in [d["id"] for d in client.alert_deliveries(rule=fired)]
        assert client.alert_deliveries(rule=quiet["id"]).to_list() == []
        assert len(client.alert_deliveries(limit=1).to_list()) == 1
        for rule_id in rules.values():  # the sim keeps crossing them
            client.update_alert(rule_id, enabled=False)
