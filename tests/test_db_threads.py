"""Database work from async code gives its pooled connection back (quantsaas/db.py).

A connection kept by a worker thread holds a pool slot for as long as the thread
lives. Enough of them and the pool is empty: the stream's re-checks, the usage
flush and every API request then wait for a connection until they fail. That is
what happened in a long test run, where channels' test communicator silences
``channels.db``'s connection clean-up while it waits for a frame.
"""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from django.db import connections

from accounts.models import Organization
from quantsaas.db import in_db_thread

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def _held() -> int:
    stats = connections["default"].pool.get_stats()
    return int(stats["pool_size"] - stats["pool_available"])


def _count_organizations() -> int:
    return Organization.objects.count()


async def test_worker_threads_give_their_connections_back_while_a_test_communicator_waits():
    if not connections["default"].settings_dict.get("OPTIONS", {}).get("pool"):
        pytest.skip("the connection pool is off (DB_POOL=0 or not PostgreSQL)")
    before = await in_db_thread(_held)()
    # What channels.testing does around every send_input/receive_output.
    with mock.patch("channels.db.close_old_connections", lambda **kwargs: None):
        counts = await asyncio.gather(*(in_db_thread(_count_organizations)() for _ in range(12)))
    assert counts == [0] * 12
    # The pool takes a returned connection back in its own worker (it checks the state
    # first), so give it a moment; a kept connection never comes back.
    held = await in_db_thread(_held)()
    for _ in range(20):
        if held <= before:
            break
        await asyncio.sleep(0.05)
        held = await in_db_thread(_held)()
    assert held <= before
