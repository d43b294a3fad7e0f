"""REST books are capped at the plan's depth, as the stream is (billing.gates)."""

from __future__ import annotations

import pytest

from marketdata.sim.history import sim_history_load
from marketdata.sim.params import DEFAULT_INSTRUMENTS
from quantsaas.timeutil import now_ms
from tests.factories import plan_override_with

pytestmark = pytest.mark.django_db

BOOK = "/api/v1/markets/sim/BTC-USD/book"


@pytest.fixture
def shallow_plan(acme):
    """Acme reads real time on a plan whose books are 10 levels deep."""
    plan_override_with(organization=acme, book_depth=10)
    end = now_ms()
    sim_history_load(minutes=2, seed=5, end_ms=end - end % 60_000)


def test_a_book_deeper_than_the_plan_allows_is_refused_naming_the_plans(shallow_plan, alice_client):
    response = alice_client.get(f"{BOOK}?depth=50")

    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "plan_required"
    assert "10 levels" in error["message"]
    assert error["details"]["plans"] == ["pro", "enterprise"]


def test_a_book_within_the_plan_and_the_default_are_answered(shallow_plan, alice_client):
    within = alice_client.get(f"{BOOK}?depth=10")
    default = alice_client.get(BOOK)  # 20 by default: the plan's 10 when less

    assert within.status_code == default.status_code == 200
    assert len(within.json()["bids"]) == len(default.json()["bids"]) == 10
    assert len(default.json()["asks"]) == 10


def test_a_plan_with_full_depth_reads_past_the_default_20_levels(acme, alice_client):
    """depth=50, the documented maximum, is served: here every level the simulator quotes
    (it quotes fewer than 50 a side, docs/marketdata.md), beyond the default 20."""
    plan_override_with(organization=acme, book_depth=50)
    end = now_ms()
    sim_history_load(minutes=2, seed=5, end_ms=end - end % 60_000)
    quoted = next(p.depth for p in DEFAULT_INSTRUMENTS if p.symbol == "BTC/USD")

    book = alice_client.get(f"{BOOK}?depth=50").json()

    assert len(book["bids"]) == len(book["asks"]) == quoted > 20
    assert len(alice_client.get(BOOK).json()["bids"]) == 20
    assert [p for p, _ in book["bids"]] == sorted((p for p, _ in book["bids"]), reverse=True)
    assert [p for p, _ in book["asks"]] == sorted(p for p, _ in book["asks"])
    assert book["bids"][0][0] < book["asks"][0][0]
    assert alice_client.get(f"{BOOK}?depth=51").status_code == 400


def test_seeded_plans_cap_books_and_floor_the_stream():
    from billing.models import Plan

    limits = {
        p.code: (p.book_depth, p.stream_conflate_floor_ms)
        for p in Plan.objects.filter(code__in=["free", "pro", "enterprise"])
    }
    assert limits == {"free": (20, 1000), "pro": (50, 0), "enterprise": (50, 0)}


def test_operators_see_and_edit_both_limits_in_the_admin(admin_client):
    from billing.models import Plan

    listing = admin_client.get("/admin/billing/plan/").content.decode()
    free = Plan.objects.get(code="free")
    form = admin_client.get(f"/admin/billing/plan/{free.pk}/change/").content.decode()

    assert "Order book depth" in listing and "Stream conflation floor (ms)" in listing
    assert 'name="book_depth" value="20"' in form
    assert 'name="stream_conflate_floor_ms" value="1000"' in form
