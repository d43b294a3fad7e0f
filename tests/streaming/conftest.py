"""Fixtures for the stream: sim instruments, plans, keys, and a Channels test application."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import pytest
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client

from accounts.services.api_keys import api_key_create
from billing.models import Plan, PlanOverride, StripeCustomer
from billing.services.subscriptions import subscription_store
from marketdata.models import Exchange, Instrument
from marketdata.streaming.hub import hub_peek
from marketdata.streaming.origin import BrowserOriginValidatorStack
from quantsaas.routing import websocket_urlpatterns

PATH = "/ws/v1/stream"
PLAN_DEFAULTS = {
    "name": "Test plan",
    "price_cents": 0,
    "requests_per_minute": 600,
    "ws_connections": 5,
    "ws_subscriptions": 50,
    "stream_delay_seconds": 0,
    "history_days": None,
    "api_keys": 20,
    "analytics": True,
    "backtests_per_day": 10,
    "is_public": False,
}


def application():
    return BrowserOriginValidatorStack(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))


@pytest.fixture
def sim_market(transactional_db):
    exchange, _ = Exchange.objects.get_or_create(id="sim", defaults={"name": "Simulated"})
    for base, tick, step in (("BTC", "0.01", "0.0001"), ("ETH", "0.01", "0.001")):
        Instrument.objects.update_or_create(
            exchange=exchange,
            ccxt_symbol=f"{base}/USD",
            defaults={
                "symbol": f"{base}-USD",
                "base": base,
                "quote": "USD",
                "price_precision": Decimal(tick),
                "size_precision": Decimal(step),
                "active": True,
            },
        )
    return exchange


def plan_grant(organization, *, code: str = "stream-test", **fields) -> Plan:
    """Put `organization` on a plan with these stream limits (an operator override)."""
    plan, _ = Plan.objects.update_or_create(code=code, defaults={**PLAN_DEFAULTS, **fields})
    PlanOverride.objects.create(organization=organization, plan=plan, reason="test")
    return plan


def plan_subscribe(organization, *, code: str, **fields) -> Plan:
    """Put `organization` on a plan through its Stripe subscription, stored as the
    webhook sync stores it; a later call changes the same subscription's price."""
    plan, _ = Plan.objects.update_or_create(
        code=code, defaults={**PLAN_DEFAULTS, **fields, "stripe_price_id": f"price_{code}"}
    )
    customer, _ = StripeCustomer.objects.get_or_create(
        organization=organization, defaults={"stripe_customer_id": f"cus_{organization.pk}"}
    )
    with transaction.atomic():
        subscription_store(
            data={
                "id": f"sub_{organization.pk}",
                "customer": customer.stripe_customer_id,
                "status": "active",
                "items": {"data": [{"price": {"id": plan.stripe_price_id}}]},
            }
        )
    return plan


@pytest.fixture
def acme_key(sim_market, alice, acme) -> str:
    plan_grant(acme)
    return api_key_create(organization=acme, created_by=alice, name="stream").raw_key


def session_cookie(user, organization) -> str:
    client = Client()
    client.force_login(user)
    session = client.session
    session["organization_id"] = organization.pk
    session.save()
    return f"sessionid={client.cookies['sessionid'].value}"


def communicator(*, key: str | None = None, cookie: str | None = None, origin: str | None = None):
    headers = []
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return WebsocketCommunicator(application(), PATH, headers=headers)


async def receive(comm, seconds: float = 3.0) -> dict:
    return json.loads(await comm.receive_from(seconds))


async def receive_until(comm, predicate, seconds: float = 5.0) -> dict:
    """The first frame matching `predicate` (others are skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        frame = await receive(comm, max(0.05, deadline - loop.time()))
        if predicate(frame):
            return frame


async def closed_with(comm, seconds: float = 5.0) -> int:
    """Skip frames until the server closes; return the close code."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        output = await comm.receive_output(max(0.05, deadline - loop.time()))
        if output["type"] == "websocket.close":
            return output.get("code", 1000)


async def close_message(comm, seconds: float = 5.0) -> dict:
    """Skip frames until the server closes; return the close (code and reason)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        output = await comm.receive_output(max(0.05, deadline - loop.time()))
        if output["type"] == "websocket.close":
            return output


async def connected(**kwargs):
    comm = communicator(**kwargs)
    ok, _ = await comm.connect()
    assert ok
    return comm


def book(i: int) -> dict:
    return {"bids": [[100.0 + i, 1.0]], "asks": [[101.0 + i, 2.0]], "ts": int(time.time() * 1000)}


async def subscribed(key: str, channels: list[str]):
    comm = await connected(key=key)
    assert (await receive(comm))["type"] == "welcome"
    await comm.send_json_to({"op": "subscribe", "channels": channels})
    assert await receive(comm) == {"type": "subscribed", "channels": channels, "conflate_ms": 0}
    return comm


@pytest.fixture(autouse=True)
async def _hub_cleanup():
    yield
    hub = hub_peek()
    if hub is not None:
        try:
            await asyncio.wait_for(asyncio.shield(hub.aclose()), 10)
        except TimeoutError:
            import sys

            for task in asyncio.all_tasks():
                task.print_stack(file=sys.stderr)
            raise
