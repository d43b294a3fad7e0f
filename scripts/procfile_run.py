"""The image's entry point: run a Procfile process by name, or any other command.

    procfile_run.py web            # the Procfile's `web:` line, through /bin/sh
    procfile_run.py python manage.py migrate

The Procfile stays the one list of processes (honcho reads it in `make run`, this reads it
in the container), so the two cannot drift apart. The shell is replaced by the process
(`exec`), so SIGTERM from the container runtime reaches it directly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROCFILE = Path(__file__).resolve().parents[1] / "Procfile"


def procfile_commands(text: str) -> dict[str, str]:
    """name -> command of each `name: command` line (comments and blanks skipped)."""
    commands = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#") and ":" in line:
            name, _, command = line.partition(":")
            commands[name.strip()] = command.strip()
    return commands


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: procfile_run.py <process name> | <command> [args...]")
    commands = procfile_commands(PROCFILE.read_text())
    if len(argv) == 1 and argv[0] in commands:
        os.execvp("/bin/sh", ["/bin/sh", "-c", f"exec {commands[argv[0]]}"])  # noqa: S606
    os.execvp(argv[0], argv)  # noqa: S606 (an entry point replaces itself)


if __name__ == "__main__":
    main(sys.argv[1:])
