"""A venue this deployment cannot reach: its shard retries, /readyz says so and stays ready."""

from __future__ import annotations

import json
import socket

import pytest
from asgiref.sync import sync_to_async

from marketdata.feeds.health import feed_health
from quantsaas.health import readiness_report
from tests.marketdata.feeds.conftest import only_instrument, running_feeds, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


async def test_unreachable_venue_is_reported_without_failing_readiness(monkeypatch):
    port = _closed_port()
    urls = {"public": f"http://127.0.0.1:{port}", "ws": {"publicV2": f"ws://127.0.0.1:{port}/v2"}}
    monkeypatch.setenv("FEED_URL_OVERRIDES", json.dumps({"kraken": urls}))
    await sync_to_async(only_instrument)("kraken", "BTC/USD")

    async with running_feeds(exchange="kraken"):
        health = await wait_until(
            sync_to_async(lambda: _state(feed_health("kraken")["kraken"], "unreachable")),
            what="kraken reported unreachable",
        )
        _, report = await sync_to_async(readiness_report)()

    assert health["connected"] is False
    assert report["feeds"]["ok"] is True
    assert report["feeds"]["exchanges"]["kraken"] == "unreachable"


def _state(health: dict, state: str):
    return health if health["state"] == state else None
