"""A small fake of Stripe's REST API for the calls QuantSaaS makes.

The real `stripe` library talks to it over HTTP on 127.0.0.1 (STRIPE_API_BASE),
so requests are form-encoded exactly as for Stripe and answers are Stripe-shaped
JSON objects. Tests drive Stripe-side state directly (`checkout_complete`,
`subscription_update`) and then deliver signed webhooks, as Stripe would.

Served: customers (create, retrieve), checkout sessions (create, retrieve),
billing portal sessions (create), subscriptions (retrieve, list).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

SECRET_KEY = "sk_test_fake_0123456789"
_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_fake{next(_ids):06d}"


def parse_form(body: str) -> dict[str, Any]:
    """Stripe's nested form encoding (`a[b][0][c]=v`) back into dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = root
        for part, following in itertools.pairwise(parts):
            container: Any = [] if following.isdigit() else {}
            if isinstance(node, list):
                index = int(part)
                while len(node) <= index:
                    node.append(None)
                if node[index] is None:
                    node[index] = container
                node = node[index]
            else:
                node = node.setdefault(part, container)
        last = parts[-1]
        if isinstance(node, list):
            index = int(last)
            while len(node) <= index:
                node.append(None)
            node[index] = value
        else:
            node[last] = value
    return root


class FakeStripe:
    """Stripe-side state plus the HTTP server that serves it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.customers: dict[str, dict] = {}
        self.sessions: dict[str, dict] = {}
        self.portal_sessions: dict[str, dict] = {}
        self.subscriptions: dict[str, dict] = {}
        self.requests: list[dict] = []  # every call: method, path, params, headers
        self.idempotent: dict[str, tuple[int, dict]] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeStripe:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- what tests do on "Stripe's side" -----------------------------------------------

    def checkout_complete(self, session_id: str, *, status: str = "active") -> dict:
        """The customer pays: the session completes and a subscription exists."""
        with self.lock:
            session = self.sessions[session_id]
            now = int(time.time())
            price = session["line_items"][0]["price"]
            subscription = {
                "id": new_id("sub"),
                "object": "subscription",
                "customer": session["customer"],
                "status": status,
                "cancel_at_period_end": False,
                "canceled_at": None,
                "created": now,
                "metadata": dict(session.get("subscription_data", {}).get("metadata", {})),
                "items": {
                    "object": "list",
                    "data": [
                        {
                            "id": new_id("si"),
                            "object": "subscription_item",
                            "price": {"id": price, "object": "price"},
                            "quantity": 1,
                            "current_period_start": now,
                            "current_period_end": now + 30 * 86400,
                        }
                    ],
                },
            }
            self.subscriptions[subscription["id"]] = subscription
            session.update(
                status="complete", payment_status="paid", subscription=subscription["id"]
            )
            return json.loads(json.dumps(session))

    def subscription_update(self, subscription_id: str, **fields: Any) -> dict:
        with self.lock:
            subscription = self.subscriptions[subscription_id]
            subscription.update(fields)
            return json.loads(json.dumps(subscription))

    def subscription(self, subscription_id: str) -> dict:
        with self.lock:
            return json.loads(json.dumps(self.subscriptions[subscription_id]))

    def calls(self, method: str, path_prefix: str) -> list[dict]:
        with self.lock:
            return [
                r
                for r in self.requests
                if r["method"] == method and r["path"].startswith(path_prefix)
            ]

    # --- the API ------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict, params: dict) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        if parts[0] != "v1":
            return 404, _error("Unrecognized request URL.")
        route = parts[1:]
        if route == ["customers"] and method == "POST":
            customer = {
                "id": new_id("cus"),
                "object": "customer",
                "name": params.get("name"),
                "email": params.get("email"),
                "metadata": params.get("metadata", {}),
            }
            self.customers[customer["id"]] = customer
            return 200, customer
        if len(route) == 2 and route[0] == "customers" and method == "GET":
            return _found(self.customers.get(route[1]), "customer", route[1])
        if route == ["checkout", "sessions"] and method == "POST":
            if params.get("customer") not in self.customers:
                return 400, _error(f"No such customer: '{params.get('customer')}'", "customer")
            session_id = new_id("cs_test")
            session = {
                "id": session_id,
                "object": "checkout.session",
                "mode": params.get("mode"),
                "customer": params.get("customer"),
                "client_reference_id": params.get("client_reference_id"),
                "line_items": params.get("line_items", []),
                "metadata": params.get("metadata", {}),
                "subscription_data": params.get("subscription_data", {}),
                "success_url": params.get("success_url"),
                "cancel_url": params.get("cancel_url"),
                "status": "open",
                "payment_status": "unpaid",
                "subscription": None,
                "url": f"{self.base}/pay/{session_id}",
            }
            self.sessions[session_id] = session
            return 200, session
        if len(route) == 3 and route[:2] == ["checkout", "sessions"] and method == "GET":
            return _found(self.sessions.get(route[2]), "checkout.session", route[2])
        if route == ["billing_portal", "sessions"] and method == "POST":
            if params.get("customer") not in self.customers:
                return 400, _error(f"No such customer: '{params.get('customer')}'", "customer")
            portal = {
                "id": new_id("bps"),
                "object": "billing_portal.session",
                "customer": params["customer"],
                "return_url": params.get("return_url"),
                "url": f"{self.base}/portal/{params['customer']}",
            }
            self.portal_sessions[portal["id"]] = portal
            return 200, portal
        if route == ["subscriptions"] and method == "GET":
            customer = query.get("customer")
            data = [
                s for s in self.subscriptions.values() if not customer or s["customer"] == customer
            ]
            if query.get("status", "all") != "all":
                data = [s for s in data if s["status"] == query["status"]]
            return 200, {
                "object": "list",
                "url": "/v1/subscriptions",
                "has_more": False,
                "data": data,
            }
        if len(route) == 2 and route[0] == "subscriptions" and method == "GET":
            return _found(self.subscriptions.get(route[1]), "subscription", route[1])
        return 404, _error(f"Unrecognized request URL ({method}: {path}).")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                params = parse_form(body)
                query = parse_form(url.query)
                with fake.lock:
                    fake.requests.append(
                        {
                            "method": method,
                            "path": url.path,
                            "params": params,
                            "query": query,
                            "headers": dict(self.headers.items()),
                        }
                    )
                    if self.headers.get("Authorization") != f"Bearer {SECRET_KEY}":
                        status, payload = 401, _error("Invalid API Key provided.", kind="auth")
                    else:
                        key = self.headers.get("Idempotency-Key")
                        if method == "POST" and key and key in fake.idempotent:
                            status, payload = fake.idempotent[key]
                        else:
                            status, payload = fake.handle(method, url.path, query, params)
                            if method == "POST" and key:
                                fake.idempotent[key] = (status, payload)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", new_id("req"))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        return Handler


def _found(obj: dict | None, kind: str, object_id: str) -> tuple[int, dict]:
    if obj is None:
        return 404, _error(f"No such {kind}: '{object_id}'", "id", code="resource_missing")
    return 200, obj


def _error(
    message: str,
    param: str | None = None,
    *,
    kind: str = "invalid_request_error",
    code: str | None = None,
) -> dict:
    error: dict[str, Any] = {
        "type": kind if kind != "auth" else "invalid_request_error",
        "message": message,
    }
    if param:
        error["param"] = param
    if code:
        error["code"] = code
    return {"error": error}
