"""Real processes for the stream's end-to-end tests: daphne and `run_feeds --exchange sim`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
ASGI_APP = "quantsaas.asgi:application"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """The test database (pytest-django's test_<name>), as a URL for a child process."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url(), "PYTHONUNBUFFERED": "1", **extra}


def _wait_port(port: int, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited with {proc.returncode}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listening on {port}")


@contextlib.contextmanager
def processes(*, feeds: bool = True, **env: str):
    """daphne on a free port (yields its ws:// base), plus the sim feed runner if asked."""
    port = free_port()
    started: list[subprocess.Popen] = []
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed in finally
    try:
        daphne = subprocess.Popen(
            [sys.executable, "-m", "quantsaas.web", "-b", "127.0.0.1", "-p", str(port), ASGI_APP],
            cwd=ROOT,
            env=child_env(**env),
            stdout=log,
            stderr=log,
            start_new_session=True,  # own process group: cleanup reaches every child
        )
        started.append(daphne)
        if feeds:
            started.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "run_feeds", "--exchange", "sim"],
                    cwd=ROOT,
                    env=child_env(SIM_SPEED="1", **env),
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )
        _wait_port(port, daphne)
        yield f"ws://127.0.0.1:{port}/ws/v1/stream", port
    finally:
        for proc in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()
