"""Authenticating the stream three ways, and refusing everything else with 4001."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from marketdata.streaming import consumer as consumer_module
from tests.streaming.conftest import (
    closed_with,
    communicator,
    connected,
    plan_grant,
    receive,
    session_cookie,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def test_api_key_on_the_handshake_gets_a_welcome_naming_plan_and_limits(acme_key):
    comm = await connected(key=acme_key)
    welcome = await receive(comm)
    assert welcome == {
        "type": "welcome",
        "plan": "stream-test",
        "limits": {
            "connections": 5,
            "subscriptions": 50,
            "delay_seconds": 0,
            "conflate_ms": 0,
            "book_depth": 50,
            "resume_seconds": 960,
        },
    }
    await comm.disconnect()


async def test_api_key_in_the_first_message_authenticates(acme_key):
    comm = await connected()
    await comm.send_json_to({"op": "auth", "key": acme_key})
    assert (await receive(comm))["type"] == "welcome"
    await comm.disconnect()


async def test_session_cookie_authenticates_in_the_current_organization(sim_market, alice, acme):
    await sync_to_async(plan_grant)(acme, code="pro-like", ws_connections=3)
    cookie = await sync_to_async(session_cookie)(alice, acme)
    comm = await connected(cookie=cookie, origin="http://localhost")
    welcome = await receive(comm)
    assert welcome["plan"] == "pro-like"
    assert welcome["limits"]["connections"] == 3
    await comm.disconnect()


async def test_a_session_from_another_site_is_refused(sim_market, alice, acme):
    cookie = await sync_to_async(session_cookie)(alice, acme)
    comm = communicator(cookie=cookie, origin="https://evil.example")
    ok, _ = await comm.connect()
    assert not ok


@pytest.mark.parametrize("bad", ["qs_" + "x" * 40, "not-a-key"])
async def test_a_bad_key_is_closed_with_4001_on_the_handshake(sim_market, bad):
    comm = await connected(key=bad)
    error = await receive(comm)
    assert error["type"] == "error" and error["code"] == "authentication_failed"
    assert await closed_with(comm) == 4001


async def test_a_bad_key_in_the_auth_message_is_closed_with_4001(sim_market):
    comm = await connected()
    await comm.send_json_to({"op": "auth", "key": "qs_wrong"})
    assert await closed_with(comm) == 4001


async def test_no_credentials_in_time_is_closed_with_4001(sim_market, monkeypatch):
    monkeypatch.setattr(consumer_module, "AUTH_TIMEOUT_SECONDS", 0.3)
    comm = await connected()
    await comm.send_json_to({"op": "subscribe", "channels": ["trades.sim.BTC-USD"]})
    assert (await receive(comm))["code"] == "not_authenticated"
    assert await closed_with(comm, seconds=3) == 4001


async def test_a_revoked_key_loses_its_open_connection_within_seconds(acme_key, acme):
    from accounts.models import ApiKey
    from accounts.services.api_keys import api_key_revoke

    comm = await connected(key=acme_key)
    assert (await receive(comm))["type"] == "welcome"
    key = await sync_to_async(ApiKey.objects.get)(organization=acme)
    await sync_to_async(api_key_revoke)(api_key=key, actor=None)
    assert await closed_with(comm, seconds=8) == 4001


async def test_a_downgrade_to_a_delayed_plan_closes_real_time_connections_with_4003(acme_key, acme):
    comm = await connected(key=acme_key)
    assert (await receive(comm))["limits"]["delay_seconds"] == 0
    await sync_to_async(plan_grant)(acme, code="delayed", stream_delay_seconds=60)
    assert await closed_with(comm, seconds=8) == 4003
