"""The stream's AsyncAPI document is served beside the OpenAPI schema, describes every
frame the stream sends, and the docs page renders it with the real host."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

from quantsaas.asyncapi import CLIENT_MESSAGES, SERVER_MESSAGES

pytestmark = pytest.mark.django_db


def test_the_asyncapi_document_is_served_beside_the_openapi_schema(client):
    response = client.get("/api/v1/asyncapi.json", HTTP_HOST="127.0.0.1")

    assert response.status_code == 200
    document = response.json()
    assert document["asyncapi"].startswith("3.")
    server = document["servers"]["quantsaas"]
    assert (server["host"], server["protocol"], server["pathname"]) == (
        "127.0.0.1",
        "ws",
        "/ws/v1/stream",
    )
    assert client.get("/api/v1/schema/").status_code == 200


def test_every_frame_the_stream_sends_is_described():
    frames = (Path(settings.BASE_DIR) / "marketdata/streaming/frames.py").read_text()
    sent = set(re.findall(r'"type": "(\w+)"', frames))

    assert sent <= set(SERVER_MESSAGES), sent - set(SERVER_MESSAGES)
    assert {"auth", "subscribe", "unsubscribe", "ping"} <= set(CLIENT_MESSAGES)


def test_the_docs_page_renders_the_stream_on_the_real_host_and_links_back(client):
    body = client.get("/api/docs/", HTTP_HOST="localhost").content.decode()

    assert 'id="stream-url">ws://localhost/ws/v1/stream<' in body
    assert "/api/v1/asyncapi.json" in body
    assert 'href="/"' in body  # back to the product
    assert "<code>heartbeat</code>" in body and "<code>subscribe</code>" in body
    assert "quantsaas.example" not in body
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", body)
