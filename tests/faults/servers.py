"""Servers a fault test owns, so it can stop them: a private PostgreSQL cluster, and the
project's processes (feed runner, web) pointed at it.

Never the machine's shared servers: each cluster lives in a temporary directory on a
free port and is removed at the end. The PostgreSQL binaries are found at run time
(PG_BIN, else the newest /usr/lib/postgresql/*/bin, else PATH). PostgreSQL refuses to
run as root, so under root the cluster runs as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.e2e.stream_servers import ROOT, free_port

PROCESS_LOG = os.environ.get("FAULT_TEST_LOG_DIR")  # set to keep the children's output


def _pg_bin(name: str) -> str:
    installed = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    candidates = [os.environ.get("PG_BIN", ""), *reversed(installed)]
    for directory in candidates:
        if directory and Path(directory, name).exists():
            return str(Path(directory, name))
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} was not found (set PG_BIN)")
    return found


class OwnPostgres:
    """A throwaway PostgreSQL cluster: start, stop and start again at will."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="qs-faults-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            list(args),
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            user=self.user,
            cwd=self.dir,
        )

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/quantsaas"

    def create(self) -> None:
        self._run(
            _pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        self.start()
        self._run(_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                  "postgres", "quantsaas")  # fmt: skip

    def start(self) -> None:
        # fsync off is safe here: an immediate stop kills the server, not the kernel, so
        # what reached the page cache survives. synchronous_commit stays on, as in
        # production: off, a commit the client saw can vanish in the stop and the test would
        # blame the feed for a trade the database acknowledged and then lost.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.dir / "server.log"), "-w", "-t", "30", "start",
        )  # fmt: skip

    def stop(self) -> None:
        """Stop at once, as a crash or a failover would look to clients."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def own_postgres():
    pg = OwnPostgres()
    try:
        pg.create()
        yield pg
    finally:
        pg.destroy()


class Child:
    """One of the project's processes in its own process group (so every child of it is
    reached); stopped by the test, with SIGKILL if it must."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        if PROCESS_LOG:
            self._log = open(Path(PROCESS_LOG, f"{name}.log"), "ab")  # noqa: SIM115
        else:
            self._log = open(os.devnull, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env={"PYTHONUNBUFFERED": "1", **env},
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, seconds: float = 15) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(seconds)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def feed_runner(env: dict[str, str]) -> Child:
    return Child("feeds", ["manage.py", "run_feeds", "--exchange", "sim"], env)


def web(env: dict[str, str], port: int) -> Child:
    return Child(
        "web",
        ["-m", "quantsaas.web", "-b", "127.0.0.1", "-p", str(port), "quantsaas.asgi:application"],
        env,
    )


def wait_for(condition, *, seconds: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(interval)
