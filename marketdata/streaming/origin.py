"""Origin checking that protects browser sessions without locking out programs.

Channels' AllowedHostsOriginValidator refuses every handshake without an
``Origin`` header, and programs (Python ``websockets``, most SDKs) send none,
so API-key clients would be refused. The danger Origin checks exist for is
cross-site WebSocket hijacking: another site's page riding the visitor's
session cookie. Browsers always send Origin, so: a present Origin must match
ALLOWED_HOSTS (as before); an absent one is a non-browser client, which
authenticates with an API key (a cookie it might carry is its own).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import ParseResult, urlparse

from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings

# ASGI, as far as used here: scopes and messages are open dicts.
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


class _Denier(WebsocketDenier):  # type: ignore[misc]  # channels ships no type hints
    # No channel layer: a refused handshake has nothing to receive. Channels' own
    # denier opens a layer channel (a blocking Redis receive) per refused attempt,
    # which also left test event loops waiting on Redis at shutdown.
    channel_layer_alias = "refused-handshakes-use-no-layer"


def _parsed_origin(scope: dict[str, Any]) -> ParseResult | None:
    """The Origin header as OriginValidator reads it (the last one; latin-1 always decodes)."""
    parsed = None
    for name, value in scope.get("headers", ()):
        if name == b"origin":
            parsed = urlparse(value.decode("latin1"))
    return parsed


class BrowserOriginValidator(OriginValidator):  # type: ignore[misc]  # channels: no type hints
    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not self.valid_origin(_parsed_origin(scope)):
            await _Denier()(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return True
        valid: bool = self.validate_origin(parsed_origin)
        return valid


def BrowserOriginValidatorStack(application: ASGIApp) -> BrowserOriginValidator:
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(application, allowed_hosts)
