"""The web process: daphne's command line, ending as soon as daphne has stopped.

On SIGTERM daphne stops its reactor and drops the requests in flight. Their sync
threads then wait forever in asgiref's AsyncToSync for an event loop that no longer
runs, and Python joins those threads at exit, so a plain `daphne` never exits while
under load: every deploy would wait for the process manager's kill. Once daphne's
`run` returns there is nothing left to finish, so this exits at once, as
`manage.py serve` does in embedded mode.

    python -m quantsaas.web --bind 127.0.0.1 --port 8000 quantsaas.asgi:application
"""

from __future__ import annotations

import logging
import os
import sys


def main(argv: list[str]) -> None:
    from daphne.cli import CommandLineInterface

    status = 0
    try:
        CommandLineInterface().run(argv)
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
