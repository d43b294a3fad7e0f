"""LOG_FORMAT=json: one JSON object per line from web, feed and worker, and request lines
that carry the request id (echoed to the caller), the organization and the key's prefix."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import urllib.request

import pytest

from accounts.services.api_keys import api_key_create
from quantsaas.logs import JsonFormatter
from tests.e2e.stream_servers import Proc, child_env, processes, running
from tests.streaming.conftest import sim_market as sim_market  # the fixture, shared

KEYS = {"ts", "level", "logger", "message", "pid"}


# Celery prints this from its SIGTERM handler, where logging is not safe: the one plain
# line a stopping worker writes.
CELERY_SHUTDOWN = re.compile(r"^worker: (Warm|Cold) shutdown \(MainProcess\)$")


def json_lines(text: str) -> list[dict]:
    """Every line of `text` that is a JSON object; fails on any other line."""
    out = []
    for line in text.splitlines():
        if line.strip() and not CELERY_SHUTDOWN.match(line):
            record = json.loads(line)  # a plain line fails here, naming it
            assert record.keys() >= KEYS, record
            out.append(record)
    return out


@pytest.mark.django_db
def test_a_sane_request_id_is_kept_and_echoed_and_a_bad_one_replaced(client):
    response = client.get("/api/v1/exchanges", HTTP_X_REQUEST_ID="req-42.a:b")
    assert response["X-Request-ID"] == "req-42.a:b"
    response = client.get("/api/v1/exchanges", HTTP_X_REQUEST_ID="two words\nand a newline")
    generated = response["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert client.get("/pricing/")["X-Request-ID"] != generated  # a new one per request


@pytest.mark.django_db
def test_a_key_request_logs_its_organization_and_key_prefix_never_the_key(alice, acme, caplog):
    from django.test import Client

    created = api_key_create(organization=acme, created_by=alice, name="logs")
    caplog.set_level(logging.INFO, logger="quantsaas.request")
    response = Client().get(
        "/api/v1/exchanges",
        HTTP_AUTHORIZATION=f"Bearer {created.raw_key}",
        HTTP_X_REQUEST_ID="trace-1",
    )
    assert response.status_code == 200
    (record,) = [r for r in caplog.records if r.name == "quantsaas.request"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "trace-1"
    assert line["organization_id"] == acme.pk
    assert line["api_key_prefix"] == created.api_key.prefix
    assert line["status"] == 200 and line["path"] == "/api/v1/exchanges"
    assert line["duration_ms"] >= 0
    assert created.raw_key not in json.dumps(line)


def test_an_exception_is_one_json_line_with_its_traceback():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, "f.py", 1, "failed %s", ("here",), None)
        record.exc_info = sys.exc_info()
    text = JsonFormatter().format(record)
    assert "\n" not in text
    line = json.loads(text)
    assert line["message"] == "failed here" and "ValueError: boom" in line["exc_info"]


@pytest.mark.e2e
@pytest.mark.timeout(90)
@pytest.mark.django_db(transaction=True)
def test_web_feed_and_worker_all_write_json_lines(sim_market, alice, acme, tmp_path):
    key = api_key_create(organization=acme, created_by=alice, name="logs")
    worker = Proc(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "quantsaas",
            "worker",
            "--pool",
            "solo",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ],
        env=child_env(LOG_FORMAT="json", CELERY_TASK_ALWAYS_EAGER="0"),
        log=tmp_path / "worker.log",
    )
    with processes(logs=tmp_path, LOG_FORMAT="json") as (_url, port), running(worker):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/exchanges",
            headers={"Authorization": f"Bearer {key.raw_key}", "X-Request-ID": "e2e-7"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["X-Request-ID"] == "e2e-7"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "ready" in worker.tail() and (tmp_path / "feed.log").exists():
                break
            time.sleep(0.3)
        time.sleep(1)
    web = json_lines((tmp_path / f"web-{port}.log").read_text())
    (line,) = [
        r for r in web if r.get("request_id") == "e2e-7" and r["logger"] == "quantsaas.request"
    ]
    assert line["organization_id"] == acme.pk and line["api_key_prefix"] == key.api_key.prefix
    feed = json_lines((tmp_path / "feed.log").read_text())
    assert any(r["logger"].startswith("marketdata") for r in feed)
    assert any("ready" in r["message"] for r in json_lines((tmp_path / "worker.log").read_text()))
