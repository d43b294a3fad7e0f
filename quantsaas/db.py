"""Database work from async code, in a worker thread that gives its connection back.

Under the connection pool (settings: CONN_MAX_AGE 0) a worker thread that keeps its
connection holds a pool slot for as long as the thread lives; an executor's threads
outlive any one call, so a few such threads exhaust the pool and every request then
waits for a connection. channels' ``database_sync_to_async`` closes connections
around the call too, but through a module attribute that channels' own test
communicator replaces with a no-op while it waits: this helper calls Django's
function itself, so the connection goes back under test exactly as in production.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar, cast

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async as channels_database_sync_to_async
from django.db import close_old_connections

_P = ParamSpec("_P")
_T = TypeVar("_T")


def in_db_thread(fn: Callable[_P, _T]) -> Callable[_P, Awaitable[_T]]:
    """Run ``fn`` in a worker thread (never the caller's), its connection returned after.

    Not thread-sensitive on purpose: the call must not queue behind the request
    thread, and a thread of its own can always close its connection safely.
    """

    @functools.wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=False)


def database_sync_to_async(fn: Callable[_P, _T]) -> Callable[_P, Awaitable[_T]]:
    """channels' ``database_sync_to_async``, typed: thread-sensitive, so every call runs
    on the one sync thread (SQLite, the embedded default, sees one writer)."""
    return cast("Callable[_P, Awaitable[_T]]", channels_database_sync_to_async(fn))
