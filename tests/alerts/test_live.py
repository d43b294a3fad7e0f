"""LiveAlerts in the runner's place: rules loaded from the database, firings published on the
organization's alerts channel and stored with their deliveries, changes heard on reload."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from alerts.live import LiveAlerts
from alerts.models import AlertDelivery, AlertFiring, AlertRule
from marketdata.feeds.publish import Publisher
from marketdata.models import Instrument
from marketdata.streaming.store import LocalStore

pytestmark = pytest.mark.django_db(transaction=True)

TS = 1_764_000_000_000


def _rule(acme, **fields) -> AlertRule:
    btc = Instrument.objects.get(exchange_id="sim", symbol="BTC-USD")
    defaults = {"kind": "price", "direction": "above", "threshold": 100.0, "cooldown_seconds": 0}
    return AlertRule.objects.create(
        organization=acme, exchange_id="sim", instrument=btc, **{**defaults, **fields}
    )


async def _trade(publisher, price: float, ts: int) -> None:
    payload = [{"id": str(ts), "ts": ts, "price": price, "size": 1.0, "side": "buy"}]
    await publisher.publish("trades", "sim", "BTC/USD", payload)


async def test_a_crossing_is_published_stored_and_queued_for_delivery(acme):
    rule = await sync_to_async(_rule)(acme, email="desk@acme.test")
    btc = await sync_to_async(Instrument.objects.get)(exchange_id="sim", symbol="BTC-USD")
    store = LocalStore(seconds=60, maxlen=1000)
    live = LiveAlerts(instruments=[btc])
    publisher = live.tap(Publisher(store=store))
    await live.start()
    stop = asyncio.Event()
    runner = asyncio.create_task(live.run(stop))

    for i, price in enumerate([99.0, 101.0, 102.0]):
        await _trade(publisher, price, TS + i)
    await publisher.flush()
    stop.set()
    await runner

    _, messages = await store.between(f"alerts.{acme.pk}", start_ms=0, end_ms=None, previous=False)
    (record,) = [r for m in messages for r in json.loads(m.data)]
    assert (record["rule_id"], record["value"], record["tick_ts"]) == (rule.pk, 101.0, TS + 1)
    firing = await sync_to_async(AlertFiring.objects.get)(event_id=record["id"])
    assert firing.organization_id == acme.pk
    channels = await sync_to_async(list)(
        AlertDelivery.objects.filter(firing=firing).values_list("channel", flat=True)
    )
    assert channels == ["email"]


async def test_a_disabled_rule_stops_firing_after_the_reload(acme):
    rule = await sync_to_async(_rule)(acme)
    btc = await sync_to_async(Instrument.objects.get)(exchange_id="sim", symbol="BTC-USD")
    live = LiveAlerts(instruments=[btc])
    publisher = live.tap(Publisher(store=LocalStore(seconds=60, maxlen=1000)))
    await live.start()
    assert live.evaluator.rule_count == 1

    rule.enabled = False
    await sync_to_async(rule.save)()
    await live.refresh()
    for i, price in enumerate([99.0, 101.0]):
        await _trade(publisher, price, TS + i)

    assert live.evaluator.rule_count == 0 and live.fired == 0
