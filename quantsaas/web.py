"""The web process: daphne's command line, ending as soon as daphne has stopped.

On SIGTERM daphne stops its reactor and drops the requests in flight. Their sync
threads then wait forever in asgiref's AsyncToSync for an event loop that no longer
runs, and Python joins those threads at exit, so a plain `daphne` never exits while
under load: every deploy would wait for the process manager's kill. Once daphne's
`run` returns there is nothing left to finish, so this exits at once, as
`manage.py serve` does in embedded mode.

Before daphne stops, the stream drains (``streams_drain``): every WebSocket gets
close code 1012 (service restart) written at once, and the connections' quota
slots are given back in Redis, so a customer on a one-connection plan whose
socket a deploy closed is welcomed by the next process on the first try.

    python -m quantsaas.web --bind 127.0.0.1 --port 8000 quantsaas.asgi:application
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

DRAIN_SECONDS = 3.0


def streams_drain() -> Deferred[None] | None:
    """A Twisted 'before shutdown' trigger: close every stream with 1012, free the slots."""
    import asyncio

    from twisted.internet import defer

    from marketdata.streaming.hub import hubs_all

    hubs = hubs_all()
    if not hubs:
        return None
    # Taken now: daphne's own trigger, next, cancels the applications, which lets go of
    # the connections; their sockets stay open until the reactor stops, after this.
    draining = [(hub, hub.drain_start()) for hub in hubs]

    async def finish() -> None:
        await asyncio.wait_for(
            asyncio.gather(*(hub.drain(conns) for hub, conns in draining), return_exceptions=True),
            DRAIN_SECONDS,
        )
        await asyncio.sleep(0.1)  # let the transports write the close frames

    return defer.Deferred.fromFuture(asyncio.ensure_future(finish()))


def _websocket_options(cli: Any) -> None:  # daphne's CommandLineInterface (untyped)
    """A client message over daphne's hard limit (``--websocket-max-message-size``, 1 MiB)
    gets a close frame with 1009 (message too big) rather than a dropped TCP connection
    (autobahn's default, ``failByDrop``), so the client knows why."""
    factory = getattr(cli.server, "ws_factory", None)
    if factory is not None:
        factory.setProtocolOptions(failByDrop=False)


def main(argv: list[str]) -> None:
    from daphne.cli import CommandLineInterface
    from twisted.internet import reactor  # daphne's asyncio reactor, installed on import

    # Registered before daphne's own trigger (which cancels the applications): runs first.
    # twisted declares interface methods without self, so the checker shifts the arguments.
    reactor.addSystemEventTrigger("before", "shutdown", streams_drain)  # type: ignore[arg-type]
    cli = CommandLineInterface()
    reactor.callWhenRunning(_websocket_options, cli)
    status = 0
    if os.environ.get("LOG_FORMAT") == "json" and "--access-log" not in argv:
        # daphne's access lines are plain text on stdout; the request log (quantsaas.logs)
        # says the same in JSON, with the request id.
        argv = ["--access-log", os.devnull, *argv]
    try:
        cli.run(argv)
    except SystemExit as exc:  # argparse errors and --help
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        logging.getLogger(__name__).exception("the web server failed")
        status = 1
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main(sys.argv[1:])
