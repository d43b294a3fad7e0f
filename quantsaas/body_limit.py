"""A hard limit on API request bodies, enforced at the ASGI layer before Django reads them.

DRF's JSON parser reads the whole body whatever DATA_UPLOAD_MAX_MEMORY_SIZE says, so a
20 MB body would be read, held and parsed. Here a declared Content-Length over the limit
is answered 413 without reading a byte of the body, and a body of unknown length
(chunked) is read only up to the limit, then refused: at most the limit is ever held in
memory. The answer is the API's error shape (`too_large`).

Limits (docs/decisions.md): API_BODY_LIMIT_BYTES (1 MiB) for every API path, and
API_BATCH_BODY_LIMIT_BYTES (8 MiB) for the options batch endpoints, whose 20,000-row
batches take about 4 MB of JSON.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

# The ASGI shapes this middleware handles (asgiref's own types are stricter than needed).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Loose in its arguments: Django's handler is typed with asgiref's stricter shapes.
App = Callable[..., Awaitable[None]]

API_PREFIX = "/api/"
BATCH_PREFIXES = ("/api/v1/options/",)
RETRY_MESSAGE = "Request body too large: at most {limit} bytes here."


def body_limit_for(path: str) -> int | None:
    """The largest body accepted on `path`, or None when this layer does not limit it."""
    if not path.startswith(API_PREFIX):
        return None
    if path.startswith(BATCH_PREFIXES):
        batch_limit: int = settings.API_BATCH_BODY_LIMIT_BYTES
        return batch_limit
    limit: int = settings.API_BODY_LIMIT_BYTES
    return limit


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "code": "too_large",
                "message": RETRY_MESSAGE.format(limit=limit),
                "details": {"limit_bytes": limit},
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestBodyLimit:
    """ASGI middleware for the HTTP app (quantsaas.asgi)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = body_limit_for(scope.get("path", ""))
        if limit is None:
            return await self.app(scope, receive, send)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            return await _too_large(send, limit)
        if declared is not None:
            return await self.app(scope, receive, send)
        # Unknown length: read up to the limit, then hand the buffered messages on.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away: let Django see it
            size += len(message.get("body", b""))
            if size > limit:
                return await _too_large(send, limit)
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        return await self.app(scope, replay, send)
