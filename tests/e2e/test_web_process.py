"""The web process (`python -m quantsaas.web`, the Procfile's web) stops promptly under load.

A plain daphne stopped with SIGTERM while requests are in flight never exits: their
threads wait for an event loop that has stopped (quantsaas/web.py). Deploys and
process managers send SIGTERM to busy servers, so this is what they would see.
"""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.e2e.stream_servers import ASGI_APP, ROOT, _wait_port, child_env, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def _hammer(port: int, stop: threading.Event, answered: list[int]) -> None:
    while not stop.is_set():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/pricing/", headers={"X-Forwarded-Proto": "https"})
            answered.append(conn.getresponse().status)
        except OSError:
            return  # the server went away: what this test is waiting for
        finally:
            conn.close()


def test_the_web_process_exits_at_once_on_sigterm_while_busy():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "quantsaas.web", "-b", "127.0.0.1", "-p", str(port), ASGI_APP],
        cwd=ROOT,
        env=child_env(LOG_LEVEL="WARNING"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    stop, answered = threading.Event(), []
    clients = [threading.Thread(target=_hammer, args=(port, stop, answered)) for _ in range(12)]
    try:
        _wait_port(port, server)
        for client in clients:
            client.start()
        deadline = time.monotonic() + 30
        while len(answered) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(answered) >= 50 and set(answered) == {200}  # busy, and serving pages

        server.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = server.wait(15)

        assert time.monotonic() - started < 5
        assert code == 0
    finally:
        stop.set()
        for client in clients:
            client.join(10)
        if server.poll() is None:
            server.kill()
            server.wait(5)
