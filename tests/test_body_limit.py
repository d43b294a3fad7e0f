"""Oversized API bodies: 413 in the error shape, refused before the body is read.

Driven through the project's real ASGI application (what daphne runs), because the
limit lives at that layer: Django and DRF never see the body.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from quantsaas.asgi import application
from quantsaas.body_limit import RequestBodyLimit

MIB = 1024 * 1024
pytestmark = pytest.mark.django_db(transaction=True)


def _scope(path: str, *, length: int | None) -> dict:
    headers = [(b"content-type", b"application/json"), (b"host", b"testserver")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


class Body:
    """Feeds a body in chunks and counts how many the application asked for."""

    def __init__(self, size: int, chunk: int = 64 * 1024) -> None:
        self.chunks = [b"x" * min(chunk, size - i) for i in range(0, size, chunk)] or [b""]
        self.read = 0

    async def receive(self) -> dict:
        if self.read >= len(self.chunks):
            await asyncio.Event().wait()  # the client stays connected, waiting for the answer
        self.read += 1
        return {
            "type": "http.request",
            "body": self.chunks[self.read - 1],
            "more_body": self.read < len(self.chunks),
        }


async def _call(app, scope, body: Body) -> tuple[int, dict, bytes]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, body.receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, content


async def test_a_declared_20_mb_body_is_413_json_without_reading_it():
    body = Body(20 * 1024 * 1024)
    status, headers, content = await _call(
        application, _scope("/api/v1/backtests", length=20 * 1024 * 1024), body
    )

    assert status == 413
    assert headers["content-type"] == "application/json"
    error = json.loads(content)["error"]
    assert error["code"] == "too_large"
    assert error["details"]["limit_bytes"] == MIB
    assert body.read == 0


async def test_a_chunked_body_is_cut_off_just_past_the_limit():
    body = Body(6 * MIB)
    status, _, content = await _call(application, _scope("/api/v1/backtests", length=None), body)

    assert status == 413
    assert json.loads(content)["error"]["code"] == "too_large"
    assert body.read <= MIB // (64 * 1024) + 1  # never the 96 chunks sent


async def test_the_options_batch_takes_bodies_beyond_the_default_limit():
    two_mib = 2 * MIB
    status, _, _ = await _call(
        application, _scope("/api/v1/options/price", length=two_mib), Body(two_mib)
    )
    assert status != 413  # Django answers (unauthenticated here): the body was accepted
    status, _, _ = await _call(
        application, _scope("/api/v1/options/price", length=9 * MIB), Body(9 * MIB)
    )
    assert status == 413


async def test_a_chunked_body_within_the_limit_reaches_the_application_whole():
    seen: list[bytes] = []

    async def echo(scope, receive, send):
        more = True
        while more:
            message = await receive()
            seen.append(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    body = Body(300 * 1024, chunk=10_000)
    status, _, _ = await _call(RequestBodyLimit(echo), _scope("/api/v1/x", length=None), body)

    assert status == 200
    assert b"".join(seen) == b"".join(body.chunks)


async def test_pages_outside_the_api_are_not_limited_here():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    status, _, _ = await _call(
        RequestBodyLimit(app), _scope("/accounts/login/", length=5 * MIB), Body(0)
    )
    assert status == 204 and seen == ["/accounts/login/"]
