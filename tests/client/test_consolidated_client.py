"""The client reads the consolidated view (one pair across venues) from the real product:
daphne, the feed runner on every shard, and the fake Coinbase, Kraken and Binance at the
wire (tests/e2e/test_consolidated.py checks the merging itself)."""

from __future__ import annotations

import pytest
from quantsaas_client import Client, NotFound

from accounts.services.api_keys import api_key_create
from tests.client.test_against_server import wait_for
from tests.e2e.stream_servers import WebProcess, running
from tests.e2e.test_consolidated import all_feeds, instruments
from tests.e2e.test_consolidated import venues as venues  # the fixture, shared
from tests.streaming.conftest import plan_grant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

BBO_FIELDS = {"pair", "ts", "bid", "bid_size", "bid_venue", "ask", "ask_size", "ask_venue"}


def test_consolidated_bbo_and_book_across_venues_and_404_for_a_pair_no_venue_offers(
    venues, alice, acme, tmp_path
):
    instruments()
    plan_grant(acme, code="client-consolidated", requests_per_minute=6000)
    key = api_key_create(organization=acme, created_by=alice, name="consolidated").raw_key
    web = WebProcess(logs=tmp_path)
    with (
        running(web, all_feeds(venues, tmp_path, CONSOLIDATED_STALE_SECONDS="30")),
        Client(key, base_url=web.http) as client,
    ):

        def both_venues() -> dict | None:
            try:
                bbo = client.consolidated_bbo("BTC-USD")
            except NotFound:  # nothing consolidated yet
                return None
            return bbo if bbo["venues"] == ["coinbase", "kraken"] else None

        bbo = wait_for(both_venues, 60, "coinbase and kraken in the consolidated BBO")

        assert set(bbo) == BBO_FIELDS | {"venues"}
        assert bbo["pair"] == "BTC-USD" and bbo["ts"] > 0
        assert bbo["bid"] < bbo["ask"] and bbo["bid_size"] > 0 and bbo["ask_size"] > 0
        assert {bbo["bid_venue"], bbo["ask_venue"]} <= {"coinbase", "kraken"}
        assert "binance" not in bbo["venues"]  # USDT is not USD: BTC-USDT is its own pair

        # A ccxt-style symbol is accepted; each level is [price, total, {venue: size}].
        book = client.consolidated_book("btc/usd", depth=3)
        assert (book["pair"], book["venues"]) == ("BTC-USD", ["coinbase", "kraken"])
        assert len(book["bids"]) == len(book["asks"]) == 3
        assert [lv[0] for lv in book["bids"]] == sorted(
            (lv[0] for lv in book["bids"]), reverse=True
        )
        assert [lv[0] for lv in book["asks"]] == sorted(lv[0] for lv in book["asks"])
        assert book["bids"][0][0] < book["asks"][0][0]
        for _price, total, by_venue in book["bids"] + book["asks"]:
            assert set(by_venue) <= {"coinbase", "kraken"}
            assert sum(by_venue.values()) == pytest.approx(total)
        assert len(client.consolidated_book("BTC-USD")["bids"]) > 3  # default depth 20

        with pytest.raises(NotFound) as unknown:
            client.consolidated_bbo("DOGE-EUR")
        assert unknown.value.code == "not_found"
        with pytest.raises(NotFound):
            client.consolidated_book("DOGE-EUR")
