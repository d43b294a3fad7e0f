"""Coinbase specifics: a lost websocket message shows as a sequence_num jump."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from tests.marketdata.feeds.conftest import only_instrument, running_feeds, wait_until
from tests.marketdata.feeds.test_venues import _reported, _stream, _tape_stored
from tests.marketdata.feeds.venue_adapters import venue_start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def coinbase(monkeypatch):
    adapter = venue_start("coinbase")
    monkeypatch.setenv("FEED_URL_OVERRIDES", json.dumps({"coinbase": adapter.fake.ccxt_urls()}))
    yield adapter
    adapter.fake.stop()


async def test_a_lost_trades_message_is_noticed_and_repaired(coinbase, transactional_db):
    instrument = await sync_to_async(only_instrument)("coinbase", "BTC/USD")
    async with running_feeds(exchange="coinbase", kinds=("trades",)):
        await wait_until(coinbase.subscribed(("trades",)), what="subscription")
        await coinbase.emit_trades(10)
        await wait_until(lambda: _tape_stored(coinbase, instrument), what="first trades")
        connections = coinbase.fake.connections

        coinbase.fake.lose_messages(1)
        await coinbase.emit_trades(15)  # never arrives; nothing but the next number says so
        await coinbase.emit_trades(5)  # its sequence_num jumps: the stream reconnects
        await wait_until(lambda: coinbase.fake.connections > connections, what="a reconnect")
        await wait_until(coinbase.subscribed(("trades",)), what="resubscription")
        await coinbase.emit_trades(5)
        await wait_until(lambda: _tape_stored(coinbase, instrument), what="the whole tape")
        health = await wait_until(
            lambda: _reported("coinbase", lambda h: _stream(h, "trades")["reconnects"]),
            what="health report",
        )
    assert _stream(health, "trades")["reconnects"] >= 1
