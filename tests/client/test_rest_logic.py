"""The REST client's paging, retries, throttling and errors, against a scripted local server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from quantsaas_client import (
    AuthenticationFailed,
    Backoff,
    Client,
    InvalidRequest,
    NotFound,
    PlanRequired,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
    TransportError,
)
from quantsaas_client._time import to_ms

from tests.client.local_http import Answer, serve
from tests.e2e.stream_servers import free_port


def client_for(base: str, sleeps: list[float], **retry) -> Client:
    policy = RetryPolicy(**{"backoff": Backoff(base=0.5, cap=8.0), **retry})
    return Client("qs_test_key", base_url=base, retry=policy, sleep=sleeps.append)


def error(status: int, code: str, details: dict | None = None, **headers) -> Answer:
    body = {"error": {"code": code, "message": f"{code} here", "details": details or {}}}
    return Answer(status, body, headers)


def test_trades_iterates_every_page_following_only_the_path_of_next():
    pages = {
        None: ([{"id": "1", "ts": 1}, {"id": "2", "ts": 2}], "c2"),
        "c2": ([{"id": "3", "ts": 3}], "c3"),
        "c3": ([{"id": "4", "ts": 4}], None),
    }

    def script(seen):
        cursor = seen.path.partition("cursor=")[2] or None
        data, following = pages[cursor]
        # The last link names another host: the client must still ask ours (the key never
        # travels to a host it was not configured for).
        host = "http://elsewhere.invalid" if following == "c3" else "http://127.0.0.1:1"
        nxt = f"{host}/api/v1/markets/binance/BTC-USDT/trades?cursor={following}"
        return Answer(200, {"data": data, "next": nxt if following else None})

    with serve(script) as (base, seen), client_for(base, []) as client:
        trades = client.trades("binance", "btc/usdt", start="2026-01-01T00:00:00Z", end=1_900_000)
        assert [t["id"] for t in trades] == ["1", "2", "3", "4"]
        assert trades.pages_fetched == 3
    assert seen[0].path == (
        "/api/v1/markets/binance/BTC-USDT/trades?start=1767225600000&end=1900000"
    )
    assert [s.path.rsplit("=", 1)[1] for s in seen[1:]] == ["c2", "c3"]
    assert all(s.headers["authorization"] == "Bearer qs_test_key" for s in seen)


def test_max_records_stops_paging_early():
    def script(seen):
        return Answer(200, {"data": [{"ts": i} for i in range(10)], "next": "/again?cursor=x"})

    with serve(script) as (base, seen), client_for(base, []) as client:
        assert len(client.candles("sim", "BTC-USD", max_records=25).to_list()) == 25
    assert len(seen) == 3


def test_429_waits_as_long_as_retry_after_says_then_succeeds():
    answers = iter([error(429, "rate_limited", **{"Retry-After": "2"}), Answer(200, {"last": 1})])
    sleeps: list[float] = []
    with serve(lambda seen: next(answers)) as (base, seen), client_for(base, sleeps) as client:
        assert client.ticker("sim", "BTC-USD") == {"last": 1}
    assert len(seen) == 2
    assert 2.0 <= sleeps[0] <= 2.2  # the server's wait plus at most 10 % jitter


def test_429_without_retry_after_waits_for_the_ratelimit_reset():
    answers = iter(
        [error(429, "rate_limited", **{"RateLimit-Reset": "3"}), Answer(200, {"ok": True})]
    )
    sleeps: list[float] = []
    with serve(lambda seen: next(answers)) as (base, _), client_for(base, sleeps) as client:
        client.usage()
    assert 3.0 <= sleeps[0] <= 3.3


def test_503_backs_off_exponentially_with_jitter_then_raises():
    sleeps: list[float] = []
    # Every answer carries RateLimit-Reset; on a 503 it says nothing about the outage.
    script = lambda seen: error(503, "unavailable", **{"RateLimit-Reset": "50"})  # noqa: E731
    with (
        serve(script) as (base, seen),
        client_for(base, sleeps, max_retries=4) as client,
        pytest.raises(ServiceUnavailable) as raised,
    ):
        client.exchanges().to_list()
    assert raised.value.status == 503
    assert len(seen) == 5
    for attempt, slept in enumerate(sleeps):
        ceiling = min(8.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= slept <= ceiling


def test_a_backtest_submission_is_never_repeated_after_a_503_but_is_after_a_429():
    sleeps: list[float] = []
    with (
        serve(lambda seen: error(503, "unavailable")) as (base, seen),
        client_for(base, sleeps) as client,
        pytest.raises(ServiceUnavailable),
    ):
        client.submit_backtest(exchange="sim", symbol="BTC-USD", strategy="momentum", start=0)
    assert len(seen) == 1

    answers = iter(
        [
            error(429, "rate_limited", **{"Retry-After": "0"}),
            Answer(202, {"id": 7, "status": "queued", "progress": 0, "params": {}}),
        ]
    )
    with serve(lambda seen: next(answers)) as (base, seen), client_for(base, sleeps) as client:
        backtest = client.submit_backtest(
            exchange="sim", symbol="BTC/USD", strategy="momentum", start=0, params={"lookback": 3}
        )
    assert backtest.id == 7 and backtest.status == "queued"
    assert len(seen) == 2
    assert seen[1].body["symbol"] == "BTC-USD" and seen[1].body["params"] == {"lookback": 3}


def test_a_wait_longer_than_max_wait_raises_at_once_with_retry_after():
    sleeps: list[float] = []
    script = lambda seen: error(429, "rate_limited", **{"Retry-After": "600"})  # noqa: E731
    with (
        serve(script) as (base, seen),
        client_for(base, sleeps, max_wait=60) as client,
        pytest.raises(RateLimited) as raised,
    ):
        client.ticker("sim", "BTC-USD")
    assert raised.value.retry_after == 600
    assert sleeps == [] and len(seen) == 1


def test_an_exhausted_window_is_waited_out_before_the_next_request():
    headers = {"RateLimit-Limit": "60", "RateLimit-Remaining": "0", "RateLimit-Reset": "5"}
    sleeps: list[float] = []
    with (
        serve(lambda seen: Answer(200, {"ok": 1}, headers)) as (base, seen),
        client_for(base, sleeps) as client,
    ):
        client.usage()
        assert sleeps == []
        client.usage()
        assert client.last_rate_limit["ratelimit-remaining"] == "0"
    assert len(sleeps) == 1 and 4.5 <= sleeps[0] <= 5.0
    assert len(seen) == 2


@pytest.mark.parametrize(
    ("answer", "exception", "code"),
    [
        (error(400, "invalid", {"limit": ["too big"]}), InvalidRequest, "invalid"),
        (error(401, "authentication_failed"), AuthenticationFailed, "authentication_failed"),
        (error(403, "plan_required", {"plan": "pro"}), PlanRequired, "plan_required"),
        (error(404, "not_found"), NotFound, "not_found"),
    ],
)
def test_the_error_shape_becomes_a_typed_exception(answer, exception, code):
    with (
        serve(lambda seen: answer) as (base, seen),
        client_for(base, []) as client,
        pytest.raises(exception) as raised,
    ):
        client.ticker("sim", "BTC-USD")
    assert raised.value.code == code
    assert raised.value.details == answer.body["error"]["details"]
    assert raised.value.message == f"{code} here"
    assert len(seen) == 1  # client errors are not retried


def test_an_unreachable_server_is_retried_then_reported():
    sleeps: list[float] = []
    with (
        client_for(f"http://127.0.0.1:{free_port()}", sleeps, max_retries=2) as client,
        pytest.raises(TransportError),
    ):
        client.ticker("sim", "BTC-USD")
    assert len(sleeps) == 2


def test_times_in_every_form_become_milliseconds():
    assert to_ms(1_700_000_000_000) == 1_700_000_000_000
    assert to_ms("1700000000000") == 1_700_000_000_000
    assert to_ms("2026-01-01T00:00:00Z") == 1_767_225_600_000
    assert to_ms(datetime(2026, 1, 1)) == 1_767_225_600_000  # naive is UTC, as the API
    assert to_ms(datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == 1_767_225_600_000
    assert abs(to_ms("1h") - (to_ms(datetime.now(UTC)) - 3_600_000)) < 1000
    with pytest.raises(ValueError, match="not a time"):
        to_ms("yesterday")


def test_to_pandas_gives_utc_times_when_pandas_is_installed():
    pd = pytest.importorskip("pandas")

    def script(seen):
        return Answer(200, {"data": [{"ts": 1_767_225_600_000, "price": 1.5}], "next": None})

    with serve(script) as (base, _), client_for(base, []) as client:
        frame = client.trades("sim", "BTC-USD").to_pandas()
    assert frame.index[0] == pd.Timestamp("2026-01-01", tz="UTC")
    assert frame["price"].tolist() == [1.5]
