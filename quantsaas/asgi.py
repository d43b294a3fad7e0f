"""ASGI entry point: HTTP through Django, WebSockets through the Channels router."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantsaas.settings")
# Django must be set up before the router imports consumers and models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from marketdata.streaming.origin import BrowserOriginValidatorStack  # noqa: E402
from quantsaas.body_limit import RequestBodyLimit  # noqa: E402
from quantsaas.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Oversized API bodies are refused before Django reads them (quantsaas.body_limit).
        "http": RequestBodyLimit(django_asgi_app),
        # Browsers must come from an allowed host; programs (no Origin header) authenticate
        # with an API key instead.
        "websocket": BrowserOriginValidatorStack(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
