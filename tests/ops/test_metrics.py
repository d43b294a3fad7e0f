"""Prometheus metrics scraped from real processes under a small load.

A real daphne and the sim feed runner (tests/e2e/stream_servers.py), two stream clients
and a few REST calls with an API key; then a real Celery worker running a task. What an
operator's Prometheus would read moves: requests by route and status, open connections
by plan, frames delivered, refusals by close code, feed messages and rows written,
tasks by name and outcome.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import urllib.error
import urllib.request

import pytest

from accounts.services.api_keys import api_key_create
from tests.e2e.stream_servers import (
    Proc,
    child_env,
    close_code,
    connect,
    expect,
    free_port,
    next_frame,
    opened,
    processes,
    running,
    subscribe,
    tiny_socket,
)
from tests.streaming.conftest import plan_grant
from tests.streaming.conftest import sim_market as sim_market  # the fixture, shared

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

TOKEN = "metrics-test-token"
TRADES = "trades.sim.BTC-USD"


def scrape(url: str, token: str | None = TOKEN) -> dict[str, float]:
    """The exposition as {'name{labels}': value}."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def value(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for key, v in samples.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(found.get(k) == want for k, want in labels.items()):
            total += v
    return total


def get(url: str, key: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_web_and_feed_metrics_move_under_a_small_load(sim_market, alice, acme, tmp_path):
    plan_grant(acme, code="fleet", ws_connections=5)
    key = api_key_create(organization=acme, created_by=alice, name="metrics").raw_key
    feed_port = free_port()
    with processes(logs=tmp_path, METRICS_TOKEN=TOKEN, METRICS_PORT=str(feed_port)) as (url, port):
        base = f"http://127.0.0.1:{port}"
        candles = f"{base}/api/v1/markets/sim/BTC-USD/candles?interval=1m"

        async def load() -> tuple[dict, dict]:
            clients = [await opened(url, key, [TRADES]) for _ in range(2)]
            for ws in clients:  # data flows to both
                while (await next_frame(ws))["type"] != "update":
                    pass
            before = await asyncio.to_thread(scrape, f"{base}/metrics")
            for _ in range(3):
                assert await asyncio.to_thread(get, candles, key) == 200
            async with connect(url, key="qs_not_a_real_key") as refused:
                assert await close_code(refused) == 4001
            await asyncio.sleep(6)  # past a usage flush: delivered frames survive it
            after = await asyncio.to_thread(scrape, f"{base}/metrics")
            for ws in clients:
                await ws.close()
            await asyncio.sleep(1)
            closed = await asyncio.to_thread(scrape, f"{base}/metrics")
            return before, after, closed

        before, after, closed = asyncio.run(load())
        feed = scrape(f"http://127.0.0.1:{feed_port}/metrics", token=None)
        # Anonymous callers and a wrong token get nothing.
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(f"{base}/metrics", token=None)
        assert refused.value.code == 403
        with pytest.raises(urllib.error.HTTPError):
            scrape(f"{base}/metrics", token="wrong")

    route = {"route": "md-candles", "method": "GET", "status": "200"}
    assert (
        value(after, "quantsaas_http_requests_total", **route)
        - value(before, "quantsaas_http_requests_total", **route)
        == 3
    )
    assert value(after, "quantsaas_http_request_duration_seconds_count", route="md-candles") >= 3
    assert not any("/api/v1/markets" in k for k in after)  # routes, never raw paths
    assert value(after, "quantsaas_stream_connections", plan="fleet") == 2
    assert value(after, "quantsaas_stream_refusals_total", code="4001") >= 1
    frames = value(after, "quantsaas_stream_frames_delivered_total")
    assert frames > value(before, "quantsaas_stream_frames_delivered_total") > 0
    # A counter never goes back: closed connections' frames are still counted.
    assert value(closed, "quantsaas_stream_frames_delivered_total") >= frames
    assert value(closed, "quantsaas_stream_connections", plan="fleet") == 0
    assert value(after, "quantsaas_stream_messages_received_total") > 0
    assert "quantsaas_stream_connections_lagging" in after

    trades = {"exchange": "sim", "kind": "trades", "symbol": "BTC/USD"}
    assert value(feed, "quantsaas_feed_messages_total", **trades) > 0
    assert value(feed, "quantsaas_feed_connected", **trades) == 1
    assert value(feed, "quantsaas_feed_last_message_age_seconds", **trades) < 10
    assert value(feed, "quantsaas_feed_rows_written_total") > 0
    assert "quantsaas_feed_writer_buffer" in feed
    assert value(feed, "quantsaas_feed_dropped_ranges") == 0


def test_worker_metrics_count_tasks_by_name_and_outcome(db, tmp_path):
    from quantsaas.celery import app

    port = free_port()
    worker = Proc(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "quantsaas",
            "worker",
            "--concurrency",
            "1",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ],
        env=child_env(CELERY_TASK_ALWAYS_EAGER="0", METRICS_PORT=str(port)),
        log=tmp_path / "worker.log",
    )
    with running(worker):
        name = "marketdata.tasks.candles_finalize"
        app.send_task(name).get(timeout=40)
        failing = app.send_task(name, kwargs={"grace_minutes": "two"})  # a TypeError inside
        with pytest.raises(Exception):  # noqa: B017 (whatever the task raised)
            failing.get(timeout=40)
        deadline, samples = time.monotonic() + 20, {}
        while time.monotonic() < deadline:
            try:
                samples = scrape(f"http://127.0.0.1:{port}/metrics", token=None)
            except OSError:
                samples = {}
            if value(samples, "quantsaas_celery_tasks_total", task=name, outcome="failed"):
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"no task counted; worker log:\n{worker.tail()}")
    assert value(samples, "quantsaas_celery_tasks_total", task=name, outcome="succeeded") == 1
    assert value(samples, "quantsaas_celery_tasks_total", task=name, outcome="failed") == 1
    assert value(samples, "quantsaas_celery_task_duration_seconds_count", task=name) == 2
    assert "quantsaas_celery_queue_depth" in " ".join(samples)
    assert value(samples, "quantsaas_backtests_queued") == 0


def test_every_metric_the_grafana_dashboard_plots_is_one_we_export():
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    exported = set()
    # The project's metrics, and the feed runner's and stream's, which marketdata owns.
    sources = [
        *(root / "quantsaas" / "metrics").glob("*.py"),
        root / "marketdata" / "feeds" / "metrics.py",
        root / "marketdata" / "streaming" / "metrics.py",
    ]
    for source in sources:
        exported |= set(re.findall(r'"(quantsaas_[a-z_]+)"', source.read_text()))
    dashboard = json.loads((root / "docs" / "grafana" / "quantsaas.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    plotted = {name for e in exprs for name in re.findall(r"quantsaas_[a-z_]+", e)}
    suffixes = ("_total", "_bucket", "_count", "_sum")
    for name in plotted:
        base = next((name[: -len(s)] for s in suffixes if name.endswith(s)), name)
        assert base in exported or name in exported, name


@pytest.mark.django_db
def test_metrics_page_is_for_staff_sessions_and_the_token_only(client, settings, alice):
    from accounts.models import User

    settings.METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 403
    client.force_login(alice)
    assert client.get("/metrics").status_code == 403  # a customer, not staff
    staff = User.objects.create_user(email="ops@quantsaas.test", password=None, is_staff=True)
    client.force_login(staff)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"quantsaas_http_requests_total" in response.content
    client.logout()
    # The token is answered before the host check: Prometheus asks by the process's address.
    ok = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", HTTP_HOST="10.0.0.7:8000")
    assert ok.status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 403


@pytest.mark.django_db
def test_an_unset_token_never_opens_the_page(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403


@pytest.mark.django_db
def test_requests_are_labelled_by_route_name_even_when_a_middleware_answered(client):
    from quantsaas.metrics.web import REQUESTS

    def count(route: str, status: str) -> float:
        return REQUESTS.labels(route, "GET", status)._value.get()

    before = count("md-candles", "401")
    client.get("/api/v1/markets/sim/BTC-USD/candles")
    assert count("md-candles", "401") == before + 1
    before = count("unmatched", "404")
    client.get("/no/such/page/12345")
    assert count("unmatched", "404") == before + 1


def test_a_client_that_falls_behind_moves_the_lag_metrics(sim_market, alice, acme):
    """A reader that stops reading fills its queue: the lagging gauge shows it while it
    lasts, and the lagged counters keep what it was told when it reads again."""
    from tests.e2e.test_stream_slow_reader import BOOK, publish_until

    plan_grant(acme, code="fleet", ws_connections=5)
    key = api_key_create(organization=acme, created_by=alice, name="lag").raw_key
    limits = {"STREAM_QUEUE_FRAMES": "16", "STREAM_TRANSPORT_BACKLOG_BYTES": "32768"}
    limits |= {"STREAM_LAG_CLOSE_SECONDS": "60", "METRICS_TOKEN": TOKEN}
    with processes(feeds=False, **limits) as (url, port):
        metrics = f"http://127.0.0.1:{port}/metrics"

        async def fall_behind() -> tuple[dict, dict, dict, dict]:
            before = await asyncio.to_thread(scrape, metrics)
            async with connect(url, key=key, sock=tiny_socket(port), max_queue=1) as slow:
                await expect(slow, "welcome")
                await subscribe(slow, [BOOK], depth=50)
                stop = asyncio.Event()
                publishing = asyncio.create_task(publish_until(stop, seconds=60))
                lagging: dict = {}
                while not value(lagging, "quantsaas_stream_connections_lagging"):
                    assert not publishing.done(), "the reader never fell behind"
                    await asyncio.sleep(0.5)
                    lagging = await asyncio.to_thread(scrape, metrics)
                stop.set()
                await publishing
                notice = await expect(
                    slow, "lagged", seconds=30, skip=("heartbeat", "snapshot", "update")
                )
                await asyncio.sleep(0.5)  # the notice is counted as it is queued
                after = await asyncio.to_thread(scrape, metrics)
            return before, lagging, notice, after

        before, lagging, notice, after = asyncio.run(fall_behind())

    assert value(before, "quantsaas_stream_connections_lagging") == 0
    assert value(lagging, "quantsaas_stream_lagged_messages") >= 1
    assert notice["channel"] == BOOK and notice["missed"] >= 1
    told = value(after, "quantsaas_stream_lagged_total") - value(
        before, "quantsaas_stream_lagged_total"
    )
    missed = value(after, "quantsaas_stream_lagged_missed_total") - value(
        before, "quantsaas_stream_lagged_missed_total"
    )
    assert told >= 1 and missed >= notice["missed"]
    assert value(after, "quantsaas_stream_connections_lagging") == 0  # it caught up


def test_feed_reconnects_and_gap_repairs_move_when_the_venue_drops_us(db, tmp_path):
    """The real runner against the fake Binance: the venue cuts the connection while
    trades print; the scrape shows the stream down, then a reconnect and a repaired gap,
    and every trade written."""
    from tests.e2e.test_consolidated import instruments
    from tests.marketdata.feeds.venue_adapters import venue_start

    instruments((("binance", "BTC/USDT", "0.01"),))
    venue = venue_start("binance")
    port = free_port()
    overrides = json.dumps({"binance": venue.fake.ccxt_urls()})
    feed = Proc(
        [sys.executable, "manage.py", "run_feeds", "--exchange", "binance"],
        env=child_env(FEED_URL_OVERRIDES=overrides, METRICS_PORT=str(port)),
        log=tmp_path / "feed.log",
    )
    trades = {"exchange": "binance", "kind": "trades", "symbol": "BTC/USDT"}
    metrics = f"http://127.0.0.1:{port}/metrics"

    def scraped_until(predicate, what: str, seconds: float = 40) -> dict[str, float]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                samples = scrape(metrics, token=None)
            except OSError:
                samples = {}
            if samples and predicate(samples):
                return samples
            time.sleep(0.2)
        raise AssertionError(f"{what} never showed; feed log:\n{feed.tail()}")

    def subscribed() -> None:
        deadline = time.monotonic() + 30
        while not venue.subscribed(("trades",))():
            assert time.monotonic() < deadline, f"no subscription; feed log:\n{feed.tail()}"
            time.sleep(0.1)

    try:
        with running(feed):
            subscribed()
            venue.fake.emit_trades(venue.market, 40)
            first = scraped_until(
                lambda s: value(s, "quantsaas_feed_rows_written_total") >= 40, "40 rows written"
            )
            venue.fake.drop_connections(refuse_reconnects=True)
            down = scraped_until(
                lambda s: value(s, "quantsaas_feed_connected", **trades) == 0, "the stream down"
            )
            venue.fake.emit_trades(venue.market, 80)  # printed while we are away
            venue.fake.accept_connections()
            subscribed()
            venue.fake.emit_trades(venue.market, 20)
            repaired = scraped_until(
                lambda s: (
                    value(s, "quantsaas_feed_gaps_repaired_total", **trades) >= 1
                    and value(s, "quantsaas_feed_rows_written_total") >= 140
                ),
                "a repaired gap and every trade written",
            )
    finally:
        venue.fake.stop()

    assert value(first, "quantsaas_feed_reconnects_total", **trades) == 0
    assert value(first, "quantsaas_feed_gaps_repaired_total", **trades) == 0
    assert value(down, "quantsaas_feed_connected", **trades) == 0
    assert value(repaired, "quantsaas_feed_connected", **trades) == 1
    assert value(repaired, "quantsaas_feed_reconnects_total", **trades) >= 1
    assert value(repaired, "quantsaas_feed_trades_recovered_total", **trades) >= 1
    assert value(repaired, "quantsaas_feed_rows_written_total") == 140  # none twice
    assert value(repaired, "quantsaas_feed_messages_total", **trades) >= 60
