"""Helpers shared by the alerts tests: a rule body and a local webhook receiver."""

from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def price_rule(**fields) -> dict:
    return {
        "name": "BTC through 70k",
        "kind": "price",
        "exchange": "sim",
        "symbol": "BTC-USD",
        "direction": "above",
        "threshold": 70_000,
        **fields,
    }


class Receiver:
    """A webhook receiver on 127.0.0.1 and a free port: records each request (its
    arrival time, headers and raw body) and answers `statuses` in turn, then 200."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[dict] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(
                    {"at": time.time(), "headers": dict(self.headers), "body": body}
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/quantsaas"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@contextlib.contextmanager
def receiving(statuses: list[int]):
    with Receiver(statuses) as r:
        yield r
