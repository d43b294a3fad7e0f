"""`run_feeds --exchange sim` publishes OFI per second on the `ofi` channel and stores the
same numbers, which the REST history then serves."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import orjson
import pytest
from django.conf import settings

from analytics.models import OfiSecond
from marketdata.feeds.groups import channel_name
from marketdata.models import Instrument
from marketdata.streaming.store import store_for_settings
from tests.e2e.test_run_feeds import _database_url, sim_instruments  # noqa: F401
from tests.factories import plan_grant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


async def _listen(seconds: float, enough: int) -> list[dict]:
    """OFI records published for sim BTC-USD: at least `enough`, within `seconds`
    (the runner needs a few seconds to start), read from the channel's stream."""
    store = store_for_settings()
    channel = channel_name("ofi", "sim", "BTC/USD")
    records: list[dict] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and len(records) < enough:
            await asyncio.sleep(0.5)
            _, messages = await store.between(channel, start_ms=0, end_ms=None, previous=False)
            records = [record for m in messages for record in orjson.loads(m.data)]
    finally:
        await store.aclose()
    return records


def test_live_ofi_is_published_and_the_rest_history_serves_the_same_numbers(
    sim_instruments,  # noqa: F811
    alice_client,
    acme,
):
    plan_grant(organization=acme)  # real time: the free plan's delay would hide the last seconds
    env = {**os.environ, "DATABASE_URL": _database_url(), "SIM_SPEED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_feeds", "--exchange", "sim"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        published = asyncio.run(_listen(60.0, enough=5))
        os.killpg(proc.pid, signal.SIGTERM)  # clean stop: the last rows are stored too
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    assert len(published) >= 3, "expected a few seconds of OFI on the stream"
    btc = Instrument.objects.get(exchange_id="sim", ccxt_symbol="BTC/USD")
    assert OfiSecond.objects.filter(instrument=btc).count() >= len(published)
    start = published[0]["ts"]
    end = published[-1]["ts"] + 1_000
    body = alice_client.get(
        f"/api/v1/analytics/sim/BTC-USD/ofi?interval=1s&start={start}&end={end}&limit=10000"
    ).json()
    served = {row["ts"]: row for row in body["data"]}
    for record in published:
        row = served[record["ts"]]
        assert (row["ofi"], row["updates"]) == (record["ofi"], record["updates"])
