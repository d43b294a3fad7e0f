"""Content-Security-Policy for every response we render.

Why a policy at all: the dashboard holds a session that can create API keys and
start payments, so an injected script would be worth a lot. The policy lets a page
run only our own files (no inline script, no inline style attribute, no CDN), talk
only to us (REST on the same origin, the stream socket on the same host) and never
be framed. Every asset, including the chart library, is served from static/.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse

# Where a form may send the browser. Upgrading and managing a plan POST to us and we
# redirect to Stripe's hosted pages; Chromium applies form-action to that redirect too.
STRIPE_FORM_TARGETS = ("https://checkout.stripe.com", "https://billing.stripe.com")
# The API documentation page (Redoc) injects its own <style> elements and runs its search
# index in a blob: worker. It shows only the public schema, so it alone gets these two.
DOCS_PATH_PREFIX = "/api/docs/"


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return None


def _form_targets() -> list[str]:
    targets = ["'self'", *STRIPE_FORM_TARGETS]
    # A Stripe stand-in (tests, staging) hosts its Checkout pages under its API base.
    fake = _origin(getattr(settings, "STRIPE_API_BASE", "") or "")
    if fake:
        targets.append(fake)
    return targets


def content_security_policy(*, host: str | None, docs: bool = False) -> str:
    """The policy for one response; `host` is the request's validated Host header.

    connect-src names the stream socket explicitly: CSP Level 3 lets 'self' cover
    ws(s) of the same host, but older engines do not, and naming it costs nothing.
    """
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"] if docs else ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'", f"ws://{host}", f"wss://{host}"] if host else ["'self'"],
        "worker-src": ["'self'", "blob:"] if docs else ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": _form_targets(),
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


class ContentSecurityPolicyMiddleware:
    """Adds the policy to every response that does not already carry one."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = content_security_policy(
                host=_validated_host(request), docs=request.path.startswith(DOCS_PATH_PREFIX)
            )
        return response


def _validated_host(request: HttpRequest) -> str | None:
    """The Host header only once Django validated it against ALLOWED_HOSTS.

    A raw header could smuggle extra directives into the policy; a refused host gets
    the policy without the socket (the page it sees is an error anyway).
    """
    try:
        return request.get_host()
    except DisallowedHost:
        return None
