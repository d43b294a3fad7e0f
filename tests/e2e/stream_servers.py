"""Real processes for the stream's end-to-end tests: daphne, `run_feeds --exchange sim`, and
a Redis server of the test's own (to stop and start under live clients).

Every process starts in its own process group on 127.0.0.1 and a free port, and every
context manager here stops what it started, whatever the test did. Pass ``logs`` (a
folder, e.g. pytest's ``tmp_path``) to keep each process's output for a failure's
message (``Proc.tail``).

The second half has the client side the stream tests share: connecting with a key,
reading frames with a timeout, and checking seq continuity the way a client must
(``from_seq`` or ``seq`` == last + 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
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


class Proc:
    """One child process in its own group, its output in a log file (or nowhere)."""

    def __init__(self, args: list[str], *, env: dict[str, str], log: Path | None) -> None:
        self.args, self.env, self.log = args, env, log
        self.popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        out = open(self.log, "ab") if self.log else open(os.devnull, "wb")  # noqa: SIM115
        with out:
            self.popen = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: cleanup reaches every child
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def wait(self, seconds: float) -> int:
        assert self.popen is not None
        return self.popen.wait(seconds)

    def stop(self, seconds: float = 10) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `seconds`. Idempotent."""
        if self.popen is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(5)

    def tail(self, lines: int = 40) -> str:
        if not self.log or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class WebProcess(Proc):
    """`python -m quantsaas.web` (daphne) on 127.0.0.1:`port`."""

    def __init__(self, *, port: int | None = None, logs: Path | None = None, **env: str):
        self.port = port or free_port()
        log = logs / f"web-{self.port}.log" if logs else None
        args = [sys.executable, "-m", "quantsaas.web", "-b", "127.0.0.1", "-p", str(self.port)]
        super().__init__([*args, ASGI_APP], env=child_env(**env), log=log)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v1/stream"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WebProcess:
        super().start()
        _wait_port(self.port, self.popen)
        return self


class FeedProcess(Proc):
    """`manage.py run_feeds --exchange sim` at real-time speed (SIM_SPEED=1)."""

    def __init__(self, *, logs: Path | None = None, name: str = "feed", **env: str):
        args = [sys.executable, "manage.py", "run_feeds", "--exchange", "sim"]
        log = logs / f"{name}.log" if logs else None
        super().__init__(args, env=child_env(**{"SIM_SPEED": "1", **env}), log=log)


class RedisServer(Proc):
    """A redis-server of the test's own, without persistence: stopping it loses everything,
    as a restarted cache node does. ``stop()`` then ``start()`` keeps the port."""

    def __init__(self, *, logs: Path | None = None) -> None:
        self.port = free_port()
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        log = logs / f"redis-{self.port}.log" if logs else None
        super().__init__(args, env=dict(os.environ), log=log)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        super().start()
        _wait_port(self.port, self.popen, seconds=10)
        return self

    def stop(self, seconds: float = 10) -> None:
        super().stop(seconds)
        deadline = time.monotonic() + 5  # the port is free again before a restart binds it
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            except OSError:
                return
            time.sleep(0.05)


@contextlib.contextmanager
def running(*procs: Proc) -> Iterator[tuple[Proc, ...]]:
    """Start `procs` in order; stop all of them, last first, on the way out."""
    started: list[Proc] = []
    try:
        for proc in procs:
            started.append(proc)
            proc.start()
        yield procs
    except BaseException as exc:
        for proc in started:  # a child that died explains most failures: say so
            if proc.popen is not None and proc.popen.poll() is not None:
                note = f"{' '.join(proc.args[1:4])} exited with {proc.popen.returncode}"
                exc.add_note(f"{note}; its last output:\n{proc.tail(15)}")
        raise
    finally:
        for proc in reversed(started):
            proc.stop()


@contextlib.contextmanager
def processes(*, feeds: bool = True, logs: Path | None = None, **env: str):
    """daphne on a free port (yields its ws:// base and port), plus the sim feed runner."""
    web = WebProcess(logs=logs, **env)
    procs: list[Proc] = [web]
    if feeds:
        procs.append(FeedProcess(logs=logs, **env))
    with running(*procs):
        yield web.url, web.port


# --- the client side ----------------------------------------------------------------------


def connect(url: str, *, key: str | None = None, **kw):
    """A `websockets` client with the API key on the handshake and a same-site Origin."""
    import websockets

    port = url.split(":")[2].split("/")[0]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    # A client that stopped reading would otherwise wait 10 s for the server's close frame.
    kw.setdefault("close_timeout", 1)
    kw.setdefault("open_timeout", 20)
    return websockets.connect(
        url, additional_headers=headers, origin=f"http://127.0.0.1:{port}", **kw
    )


async def opened(url: str, key: str, channels: list[str] | None = None, **kw):
    """A welcomed socket, subscribed to `channels` if given."""
    ws = await connect(url, key=key, **kw)
    await expect(ws, "welcome")
    if channels:
        await subscribe(ws, channels)
    return ws


def tiny_socket(port: int) -> socket.socket:
    """A client socket with a small receive buffer, so not reading backs up quickly."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def next_frame(ws, seconds: float = 15.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), seconds))


async def expect(ws, kind: str, seconds: float = 15.0, *, skip=("heartbeat",)) -> dict:
    """The next frame, which must be of type `kind` (frames of `skip` types are passed over)."""
    while True:
        frame = await next_frame(ws, seconds)
        if frame["type"] in skip and kind not in skip:
            continue
        assert frame["type"] == kind, frame
        return frame


async def subscribe(ws, channels: list[str], **options) -> dict:
    await ws.send(json.dumps({"op": "subscribe", "channels": channels, **options}))
    return await expect(ws, "subscribed")


async def close_code(ws, seconds: float = 15.0) -> int | None:
    """Read (and drop) frames until the server closes: the close code it sent (1006 for a
    connection that ended without a close frame, None if it is still open after `seconds`)."""
    import websockets

    deadline = time.monotonic() + seconds
    try:
        while True:
            await asyncio.wait_for(ws.recv(), max(0.05, deadline - time.monotonic()))
    except websockets.ConnectionClosed:
        return ws.close_code
    except TimeoutError:
        return None


async def frames_for(ws, seconds: float, *, until=None) -> list[dict]:
    """Every frame for `seconds` (or until `until(frames)` holds), with receipt time ``_at``."""
    got: list[dict] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until and until(got)):
        try:
            raw = await asyncio.wait_for(ws.recv(), max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            break
        frame = json.loads(raw)
        frame["_at"] = time.monotonic()
        got.append(frame)
    return got


def data_frames(frames: list[dict], channel: str) -> list[dict]:
    """The frames carrying `channel`'s messages (updates and snapshots), in order."""
    return [
        f for f in frames if f.get("channel") == channel and f["type"] in ("update", "snapshot")
    ]


def seq_gaps(frames: list[dict], *, after: int | None = None) -> list[tuple[int, int]]:
    """(expected, got) wherever a frame does not start right after the previous one.

    A snapshot (or, with `after` None, the first frame) sets the base without a check,
    as a client treats it.
    """
    gaps = []
    last = after
    for frame in frames:
        first = frame.get("from_seq", frame["seq"])
        if frame["type"] == "update" and last is not None and first != last + 1:
            gaps.append((last + 1, first))
        last = frame["seq"]
    return gaps


def trade_ids(frames: list[dict]) -> list[str]:
    return [record["id"] for frame in frames for record in frame["data"]]


def singles(frames: list[dict]) -> dict[int, object]:
    """seq -> data for the frames that carry exactly one message (no ``from_seq``)."""
    return {f["seq"]: f["data"] for f in frames if "from_seq" not in f}


class Recorder:
    """Reads a socket in the background, keeping every frame (receipt time in ``_at``,
    monotonic, and ``_wall_ms``), so a test can watch several clients at once. ``code`` is
    the close code once the socket has closed."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.frames: list[dict] = []
        self.code: int | None = None
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        import websockets

        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                frame["_at"], frame["_wall_ms"] = time.monotonic(), time.time() * 1000
                self.frames.append(frame)
        except websockets.ConnectionClosed:
            pass
        self.code = self.ws.close_code

    def of(self, channel: str) -> list[dict]:
        return data_frames(self.frames, channel)

    async def until(self, predicate, seconds: float, what: str = "") -> None:
        """Wait until `predicate(self)` holds; fail after `seconds` saying `what`."""
        deadline = time.monotonic() + seconds
        while not predicate(self):
            if time.monotonic() > deadline:
                kinds = [f["type"] for f in self.frames[-8:]]
                raise AssertionError(f"timed out waiting for {what}; last frames: {kinds}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task


class ClientBook:
    """A client's copy of an order book, kept as docs/api.md says a client keeps it: a snapshot,
    then each update; an update with a ``checksum`` carries the changed levels only (size
    0: the level is gone) and its checksum must match the copy, one without is the whole
    book."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}

    def apply(self, frame: dict) -> tuple[dict, dict]:
        data = frame["data"]
        if frame["type"] == "snapshot" or "checksum" not in data:
            self.bids, self.asks = {}, {}
        for side, levels in ((self.bids, data.get("bids")), (self.asks, data.get("asks"))):
            for price, size, *_ in levels or ():
                if size:
                    side[price] = size
                else:
                    side.pop(price, None)
        if frame["type"] == "update" and "checksum" in data:
            from marketdata.streaming.books import book_checksum

            bids = [[p, self.bids[p]] for p in sorted(self.bids, reverse=True)]
            asks = [[p, self.asks[p]] for p in sorted(self.asks)]
            assert book_checksum(bids, asks) == data["checksum"], frame["seq"]
        return dict(self.bids), dict(self.asks)

    @classmethod
    def follow(cls, frames: list[dict]) -> dict[int, tuple[dict, dict]]:
        """seq -> (bids, asks) held after each frame of one channel."""
        book = cls()
        return {frame["seq"]: book.apply(frame) for frame in frames}
