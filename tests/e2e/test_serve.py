"""`manage.py serve` (what `make run` calls), driven the way a developer uses it.

Each test starts the real command as a subprocess, reads what it prints, talks
to it over HTTP and stops it with Ctrl-C (SIGINT). Whatever happens, the
finally blocks kill every process it started, including honcho's children,
which live in sessions of their own.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest
import requests
from django.conf import settings

pytestmark = pytest.mark.e2e

SERVING = re.compile(r"serving at (?P<url>http://\S+/)")
DEMO_LOGIN = re.compile(
    r"demo user \(owns (?P<organization>[^)]+)\)\s+"
    r"email: (?P<email>\S+)\s+password: (?P<password>\S+)"
)
# The caller's environment must not leak into the instance under test.
NOT_INHERITED = {
    "DATABASE_URL",
    "REDIS_URL",
    "QUANTSAAS_TESTING",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "HOST",
    "PORT",
    "VAR_DIR",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "CELERY_TASK_ALWAYS_EAGER",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(*, var_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
    env.update(
        DEBUG="1", VAR_DIR=str(var_dir), PORT=str(port), HOST="127.0.0.1", PYTHONUNBUFFERED="1"
    )
    env.update(extra)
    return env


def _alive(pid: int) -> bool:
    """True unless the process is gone or only a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class Running:
    """A `manage.py` command running in the background, its output collected as it comes."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, so cleanup can reach all of it
        )
        self.seen: set[int] = set()
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def wait_for(self, pattern: re.Pattern, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = pattern.search(self.output)
            if match:
                return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{pattern.pattern!r} never printed. Output:\n{self.output}")

    def remember_processes(self) -> set[int]:
        self.seen |= _descendants(self.proc.pid)
        return self.seen

    def interrupt(self, timeout: float = 45) -> int:
        """Ctrl-C, as a developer stops `make run`; returns the exit code."""
        self.proc.send_signal(signal.SIGINT)
        returncode = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return returncode

    def kill_everything(self) -> None:
        self.remember_processes()
        for pid in [self.proc.pid, *self.seen]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def _wait_http(url: str, *, status: int = 200, timeout: float = 60, proc: Running) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            break
        try:
            response = requests.get(url, timeout=2)
            if response.status_code == status:
                return
            last = f"{response.status_code} {response.text[:300]}"
        except requests.RequestException as exc:
            last = repr(exc)
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer {status} (last: {last}). Output:\n{proc.output}")


def _log_in(base_url: str, *, email: str, password: str) -> requests.Response:
    """The login form, as a browser submits it: CSRF cookie plus the token in the form."""
    session = requests.Session()
    form = session.get(f"{base_url}accounts/login/", timeout=10)
    assert form.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    return session.post(
        f"{base_url}accounts/login/",
        data={"login": email, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base_url}accounts/login/"},
        timeout=10,
    )


def test_embedded_serve_prints_a_demo_login_that_reaches_the_dashboard(tmp_path):
    var_dir = tmp_path / "var"
    env = _env(var_dir=var_dir, port=_free_port())
    serve = Running("serve", env=env)
    try:
        url = serve.wait_for(SERVING).group("url")
        _wait_http(f"{url}healthz", proc=serve)
        login = serve.wait_for(DEMO_LOGIN)

        dashboard = _log_in(url, email=login["email"], password=login["password"])

        assert dashboard.status_code == 200
        assert urlparse(dashboard.url).path == "/dashboard/"
        assert login["organization"] in dashboard.text
        assert login["email"] in dashboard.text
        assert "embedded mode" in serve.output
        assert serve.interrupt() == 0
        assert "Stopped." in serve.output
    finally:
        serve.kill_everything()

    again = subprocess.run(
        [sys.executable, "manage.py", "seed_demo"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    second = DEMO_LOGIN.search(again.stdout)
    assert (second["email"], second["password"]) == (login["email"], login["password"])


def test_embedded_serve_refuses_a_port_that_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        serve = Running("serve", "--no-seed", env=_env(var_dir=tmp_path / "var", port=port))
        try:
            returncode = serve.proc.wait(timeout=60)
            serve._reader.join(timeout=5)
        finally:
            serve.kill_everything()

    assert returncode != 0
    assert f"Could not listen on 127.0.0.1:{port}" in serve.output


@pytest.fixture
def throwaway_database_url():
    """A database of its own for the real topology, dropped afterwards."""
    server = urlparse(os.environ["DATABASE_URL"])
    name = f"qs_serve_{secrets.token_hex(4)}"
    admin_dsn = urlunparse(server._replace(path="/postgres"))
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunparse(server._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _celery_ping(env: dict[str, str], *, timeout: float = 60) -> str:
    """What an operator runs to see whether a worker is alive."""
    celery = str(Path(sys.executable).with_name("celery"))
    deadline = time.monotonic() + timeout
    result = None
    while time.monotonic() < deadline:
        result = subprocess.run(
            [celery, "-A", "quantsaas", "inspect", "ping", "--timeout", "3"],
            cwd=settings.BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode == 0 and "pong" in result.stdout:
            return result.stdout
        time.sleep(1)
    raise AssertionError(f"no worker answered: {result.stdout}{result.stderr}")


@pytest.mark.timeout(240)
def test_real_topology_serves_runs_a_worker_and_leaves_no_process_behind(
    tmp_path, throwaway_database_url
):
    env = _env(
        var_dir=tmp_path / "var",
        port=_free_port(),
        DATABASE_URL=throwaway_database_url,
        REDIS_URL=os.environ["REDIS_URL"],
    )
    serve = Running("serve", env=env)
    try:
        url = serve.wait_for(SERVING).group("url")
        _wait_http(f"{url}readyz", proc=serve, timeout=90)
        assert "pong" in _celery_ping(env)
        assert re.search(r"worker\.1 +\|.*celery@\S+ ready\.", serve.output), serve.output
        for process in ("web", "worker", "beat"):
            assert re.search(rf"{process}\.1 started", serve.output), serve.output
        started = serve.remember_processes()
        assert len(started) >= 4  # honcho plus web, worker and beat at least

        assert serve.interrupt() == 0

        left = {pid for pid in started if _alive(pid)}
        deadline = time.monotonic() + 10
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = {pid for pid in left if _alive(pid)}
        assert not left, f"still running: {left}\n{serve.output}"
        assert "Stopped." in serve.output
    finally:
        serve.kill_everything()
