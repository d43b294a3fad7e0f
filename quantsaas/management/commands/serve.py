"""`make run`: migrate, seed the demo data, then serve the whole product.

Embedded mode (DATABASE_URL or REDIS_URL unset) is one process: daphne runs
in-process with the in-memory channel layer, and Celery tasks run eagerly in
the caller, so a fresh clone needs nothing but Python. The real topology (both
set) starts the processes of the Procfile (web, worker, beat) through honcho,
the same file any Procfile runner or PaaS reads, so development and production
start the same commands.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from quantsaas.management.commands.seed_demo import demo_logins_format, demo_logins_load

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def _browsable(host: str) -> str:
    """The address to print: a wildcard bind is reached through the loopback address."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104


# The only exchange reachable without the internet; real exchanges run in the real topology.
EMBEDDED_FEED_EXCHANGE = "sim"


DEMO_HISTORY_MINUTES = 20  # the free plan's delay (15 minutes) and a margin


class Command(BaseCommand):
    help = "Migrate, create demo data (development only) and serve QuantSaaS; `make run` calls it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", DEFAULT_HOST))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", DEFAULT_PORT)))
        parser.add_argument(
            "--no-seed", action="store_true", help="Do not create the demo accounts."
        )

    def handle(self, *args: Any, host: str, port: int, no_seed: bool, **options: Any) -> None:
        self._say(self._mode_description())
        self._say("Applying database migrations ...")
        call_command("migrate", interactive=False, verbosity=1)
        if not settings.DEBUG:
            # Production storage serves hashed files from a manifest that only
            # collectstatic writes; without it every page would fail.
            self._say("Collecting static files ...")
            call_command("collectstatic", interactive=False, verbosity=0)
        logins = None
        if no_seed:
            self._say("Demo data: skipped (--no-seed).")
        elif settings.DEBUG:
            self._say("Creating demo data (idempotent) ...")
            call_command("seed_demo", verbosity=0)
            logins = demo_logins_load()
            self._history_load()
        else:
            self._say("Demo data: skipped, it is created in development only (DEBUG is off).")
        # The server (or the child processes) open their own connections.
        connections.close_all()

        if settings.EMBEDDED:
            self._serve_embedded(host=host, port=port, logins=logins)
        else:
            self._serve_procfile(host=host, port=port, logins=logins)

    def _history_load(self) -> None:
        """The simulated market's last minutes, so a free (15-minute delayed) plan's
        dashboard moves from the first second of a fresh `make run`. The sim is a function
        of time: these are the very trades the live feed printed, and loading twice stores
        nothing new."""
        from marketdata.sim.history import sim_history_load

        self._say(f"Loading {DEMO_HISTORY_MINUTES} minutes of simulated history ...")
        stored = sim_history_load(minutes=DEMO_HISTORY_MINUTES, books=True)
        self._say(f"  {stored} new trades stored.")

    # --- output ---------------------------------------------------------------------------
    def _say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()

    def _mode_description(self) -> str:
        if not settings.EMBEDDED:
            return (
                "QuantSaaS, real topology: PostgreSQL and Redis from DATABASE_URL and REDIS_URL; "
                "web, worker and beat from the Procfile through honcho."
            )
        missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not getattr(settings, name)]
        return (
            f"QuantSaaS, embedded mode ({' and '.join(missing)} not set): "
            f"database {settings.DATABASES['default']['NAME']}, "
            "in-process channel layer, Celery tasks run in-process. "
            "Set both DATABASE_URL and REDIS_URL for the real topology."
        )

    def _banner(self, *, host: str, port: int, logins: dict[str, Any] | None) -> None:
        url = f"http://{_browsable(host)}:{port}/"
        lines = ["", f"QuantSaaS is serving at {url}  (admin: {url}admin/)"]
        if logins is not None:
            lines.append(demo_logins_format(logins))
        lines += ["Press Ctrl-C to stop.", ""]
        self._say("\n".join(lines))

    # --- embedded: one process --------------------------------------------------------------
    def _on_listening(self, *, host: str, port: int, logins: dict[str, Any] | None) -> None:
        self._banner(host=host, port=port, logins=logins)
        self._feeds_start_in_process()

    def _feeds_start_in_process(self) -> None:
        """Embedded mode runs the `sim` feed runner on daphne's own event loop.

        Twisted's asyncio reactor drives that loop, so the runner is an ordinary task; a
        shutdown trigger stops it and waits for its buffered trades to be written.
        """
        import asyncio

        from twisted.internet import defer, reactor

        from quantsaas.feeds import feeds_run_live

        stop = asyncio.Event()
        task = asyncio.get_event_loop().create_task(
            feeds_run_live(shard=None, exchange=EMBEDDED_FEED_EXCHANGE, stop_event=stop)
        )
        self._say(f"Feed runner started in this process ({EMBEDDED_FEED_EXCHANGE}).")

        def stop_feeds() -> defer.Deferred[None]:
            stop.set()
            return defer.Deferred.fromFuture(task)

        # twisted declares interface methods without self, so the checker shifts the arguments.
        reactor.addSystemEventTrigger("before", "shutdown", stop_feeds)  # type: ignore[arg-type]

    def _serve_embedded(self, *, host: str, port: int, logins: dict[str, Any] | None) -> None:
        # Imported here: daphne.server installs Twisted's asyncio reactor on import,
        # which only the serving process should do.
        from daphne.access import AccessLogGenerator
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from quantsaas.asgi import application

        # Twisted stops on SIGINT only if Python's own handler is in place; a shell starting
        # us as a background job (scripts, CI) sets it to "ignore". SIGINT must stop serve in
        # both modes (the real topology installs its own handler), so restore it.
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self._say(f"Starting daphne on {host}:{port} ...")
        server = Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            signal_handlers=True,  # Ctrl-C and SIGTERM stop the reactor cleanly
            action_logger=AccessLogGenerator(sys.stdout),
            ready_callable=lambda: self._on_listening(host=host, port=port, logins=logins),
        )
        server.run()
        if not server.listening_addresses:
            raise CommandError(f"Could not listen on {host}:{port}. Is the port in use? Set PORT.")
        self._say("Stopped.")
        # The reactor has stopped and every request is finished; what is left is interpreter
        # teardown, where a finalizer of Twisted's asyncio reactor can block for good (seen
        # under load). Ctrl-C must end the process, so close what we own and exit now.
        connections.close_all()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    # --- real topology: the Procfile through honcho -----------------------------------------
    def _serve_procfile(self, *, host: str, port: int, logins: dict[str, Any] | None) -> None:
        base_dir = Path(settings.BASE_DIR)
        bin_dir = str(Path(sys.executable).parent)
        env = os.environ.copy()
        # The Procfile names `daphne` and `celery`: use this virtualenv's, activated or not.
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
        env["HOST"] = host
        env["VAR_DIR"] = str(settings.VAR_DIR)
        env.setdefault("PYTHONUNBUFFERED", "1")
        command = [
            sys.executable,
            "-m",
            "honcho",
            "start",
            "--procfile",
            str(base_dir / "Procfile"),
            "--app-root",
            str(base_dir),
            "--port",  # honcho hands PORT to the first process, web
            str(port),
        ]
        self._say("Starting web, worker and beat (honcho start) ...")
        self._banner(host=host, port=port, logins=logins)
        self._say(f"GET http://{_browsable(host)}:{port}/readyz says when every dependency is up.")

        manager = subprocess.Popen(command, env=env, cwd=base_dir)  # noqa: S603
        received: list[int] = []

        def forward(signum: int, frame: object) -> None:
            # honcho stops every process it started on SIGINT/SIGTERM (and ignores a
            # repeat), so forwarding covers `kill <serve pid>` as well as Ctrl-C.
            received.append(signum)
            if manager.poll() is None:
                manager.send_signal(signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            returncode = manager.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if manager.poll() is None:  # serve itself failed: never leave the children behind
                manager.terminate()
                try:
                    manager.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    manager.kill()
        if received:
            self._say("Stopped.")
            return
        raise CommandError(
            f"A process exited (honcho returned {returncode}); all of them were stopped."
        )
