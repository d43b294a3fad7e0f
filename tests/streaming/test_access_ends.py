"""A stream lasts only as long as what let it in: the browser session, the key's scope."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.sessions.models import Session

from accounts.services.api_keys import api_key_create
from tests.streaming.conftest import (
    close_message,
    connected,
    plan_grant,
    receive,
    session_cookie,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def test_signing_out_closes_the_browser_stream(sim_market, alice, acme):
    await sync_to_async(plan_grant)(acme)
    cookie = await sync_to_async(session_cookie)(alice, acme)
    comm = await connected(cookie=cookie, origin="http://localhost")
    assert (await receive(comm))["type"] == "welcome"
    session_key = cookie.split("=", 1)[1]
    await sync_to_async(Session.objects.filter(session_key=session_key).delete)()  # logout
    closed = await close_message(comm, seconds=8)
    assert closed["code"] == 4001


async def test_changing_the_password_closes_streams_of_older_sessions(sim_market, alice, acme):
    await sync_to_async(plan_grant)(acme)
    cookie = await sync_to_async(session_cookie)(alice, acme)
    comm = await connected(cookie=cookie, origin="http://localhost")
    assert (await receive(comm))["type"] == "welcome"

    def change_password() -> None:
        alice.set_password("a-brand-new-passphrase-42")
        alice.save()

    await sync_to_async(change_password)()
    closed = await close_message(comm, seconds=8)
    assert closed["code"] == 4001


async def test_a_key_without_the_read_scope_may_not_stream(sim_market, alice, acme):
    await sync_to_async(plan_grant)(acme)
    created = await sync_to_async(api_key_create)(
        organization=acme, created_by=alice, name="jobs", scopes=["trade-analytics"]
    )
    comm = await connected(key=created.raw_key)
    error = await receive(comm)
    assert error["code"] == "permission_denied"
    assert error["details"] == {"required_scope": "read"}
    assert (await close_message(comm))["code"] == 4003
