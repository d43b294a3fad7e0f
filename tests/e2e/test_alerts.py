"""A price rule on the sim market, judged by the real feed runner, delivered by a real worker.

`run_feeds --exchange sim` and `celery worker` run as processes on the test database and
Redis; the webhook goes to a receiver in this test that checks its signature, email to
files (Django's file backend, readable across processes), and the stream is read back
from the store the web processes serve. Every crossing of the level between the first and
the last firing must arrive exactly once on each of the three, within 1 s of its tick.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from pathlib import Path

import pytest

from alerts.models import AlertDelivery, AlertRule
from alerts.services import Actor, alert_rule_create, alert_webhook_secret_ensure
from alerts.signing import signature_verify
from marketdata.streaming.store import store_for_settings
from tests.alerts.conftest import Receiver
from tests.e2e.stream_servers import FeedProcess, Proc, child_env, running
from tests.e2e.test_run_feeds import sim_instruments  # noqa: F401 (a fixture)
from tests.factories import plan_grant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WANTED_FIRINGS = 3
MESSAGE_END = "\n" + "-" * 79 + "\n"  # what the file backend writes after each
LATENCY_MS = 1_000


class WorkerProcess(Proc):
    def __init__(self, *, logs: Path, **env: str) -> None:
        args = [sys.executable, "-m", "celery", "-A", "quantsaas", "worker", "--pool=solo"]
        args += ["--loglevel=INFO", "--without-heartbeat", "--without-gossip", "--without-mingle"]
        env = child_env(CELERY_TASK_ALWAYS_EAGER="0", **env)
        super().__init__(args, env=env, log=logs / "worker.log")


def _messages(channel: str, since_ms: int) -> list:
    async def read():
        store = store_for_settings()
        try:
            _, found = await store.between(channel, start_ms=since_ms, end_ms=None, previous=False)
        finally:
            await store.aclose()
        return found

    return [m for m in asyncio.run(read()) if m.ts >= since_ms]


def _records(channel: str, since_ms: int) -> list[tuple[int, dict]]:
    """(publish ts, record) for every record published on `channel` since `since_ms`."""
    out = []
    for message in _messages(channel, since_ms):
        data = json.loads(message.data)
        out += [(message.ts, r) for r in (data if isinstance(data, list) else [data])]
    return out


def _wait(condition, seconds: float, what: str, *procs: Proc):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for proc in procs:
            assert proc.alive(), f"a process exited early:\n{proc.tail()}"
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(p.tail() for p in procs))


def test_each_crossing_fires_once_by_webhook_email_and_stream_within_a_second(
    sim_instruments,  # noqa: F811
    alice,
    acme,
    tmp_path,
):
    plan_grant(organization=acme)
    secret = alert_webhook_secret_ensure(organization=acme)
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()
    started = int(time.time() * 1000)
    feed = FeedProcess(logs=tmp_path)
    worker = WorkerProcess(logs=tmp_path, EMAIL_FILE_PATH=str(mail_dir))
    with Receiver() as receiver, running(feed, worker):
        trades = _wait(
            lambda: _records("trades.sim.BTC-USD", started),
            60,
            "sim trades on the stream",
            feed,
            worker,
        )
        # Half a tick above the last price: the sim's walk soon crosses it, and no trade
        # can sit exactly on it.
        level = round(trades[-1][1]["price"], 2) + 0.005
        rule = alert_rule_create(
            organization=acme,
            data={
                "name": "e2e",
                "kind": "price",
                "exchange": "sim",
                "symbol": "BTC-USD",
                "direction": "above",
                "threshold": level,
                "cooldown_seconds": 0,
                "email": "desk@acme.test",
                "webhook_url": receiver.url,
            },
            actor=Actor(user=alice),
        )
        created = int(time.time() * 1000)
        alerts_channel = f"alerts.{acme.pk}"
        _wait(
            lambda: len(_records(alerts_channel, created)) >= WANTED_FIRINGS,
            60,
            f"{WANTED_FIRINGS} firings",
            feed,
            worker,
        )
        AlertRule.objects.filter(pk=rule.pk).update(enabled=False)  # the runner hears it soon
        time.sleep(3)
        _wait(
            lambda: not AlertDelivery.objects.exclude(status="delivered").exists(),
            15,
            "every delivery done",
            worker,
        )
        firings = [r for _, r in _records(alerts_channel, created) if r["rule_id"] == rule.pk]
        stream_ts = {r["id"]: ts for ts, r in _records(alerts_channel, created)}
        tape = [r for _, r in _records("trades.sim.BTC-USD", created - 5_000)]
        webhooks = list(receiver.requests)
    # Django's file backend names a file by the second and the backend object's id, so
    # two messages sent within a second can share a file: each ends with a rule of dashes.
    emails = [
        (message, p.stat().st_mtime * 1000)
        for p in sorted(mail_dir.iterdir())
        for message in p.read_text().split(MESSAGE_END)
        if message.strip()
    ]

    # Every crossing of the level from the first firing to the last fired exactly once.
    first, last = firings[0], firings[-1]
    crossings = [
        (now["ts"], now["price"])
        for before, now in itertools.pairwise(tape)
        if before["price"] < level <= now["price"] and first["tick_ts"] <= now["ts"]
    ]
    crossings = [c for c in crossings if c[0] <= last["tick_ts"]]
    assert [(f["tick_ts"], f["value"]) for f in firings] == crossings
    ids = [f["id"] for f in firings]
    assert len(set(ids)) == len(ids) >= WANTED_FIRINGS

    # Webhook: each firing once, signed with the organization's secret, within 1 s.
    received = {}
    for request in webhooks:
        header = request["headers"]["QuantSaaS-Signature"]
        assert signature_verify(secret=secret, header=header, body=request["body"])
        body = json.loads(request["body"])
        assert body["id"] not in received, "a firing arrived twice"
        received[body["id"]] = request["at"] * 1000 - body["tick_ts"]
    assert set(received) == set(ids)
    assert max(received.values()) < LATENCY_MS, received

    # Email: one message per firing. The stream: each within 1 s of its tick.
    mailed = {f["id"]: at - f["tick_ts"] for f in firings for text, at in emails if f["id"] in text}
    assert set(mailed) == set(ids) and len(emails) == len(ids)
    assert max(mailed.values()) < LATENCY_MS, mailed
    assert all(stream_ts[f["id"]] - f["tick_ts"] < LATENCY_MS for f in firings)
    assert AlertDelivery.objects.filter(status="delivered").count() == 2 * len(ids)
    print(  # shown with -s: the figures behind the 1 s bound
        f"{len(ids)} firings; worst ms from tick: webhook {max(received.values()):.0f}, "
        f"email {max(mailed.values()):.0f}, "
        f"stream {max(stream_ts[f['id']] - f['tick_ts'] for f in firings)}"
    )
