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

from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)


def BrowserOriginValidatorStack(application):
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(application, allowed_hosts)
