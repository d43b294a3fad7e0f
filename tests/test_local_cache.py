"""The in-process TTL cache behind entitlements, instruments and candle pages."""

from __future__ import annotations

import time

import pytest

import quantsaas.cache
from quantsaas.cache import LocalCache


class FakeClock:
    """Stands in for the `time` module of quantsaas.cache: monotonic() moves only on demand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(quantsaas.cache, "time", fake)
    return fake


def test_an_entry_is_served_until_its_time_to_live_and_gone_after(clock):
    local = LocalCache(seconds=10)
    local.set("a", 1)

    clock.advance(9.9)
    assert local.get("a") == 1

    clock.advance(0.2)
    assert local.get("a") is None
    assert local.get("a", "missing") == "missing"
    assert len(local) == 0  # an expired entry is dropped, not kept around


def test_a_time_to_live_given_to_set_overrides_the_default(clock):
    local = LocalCache(seconds=10)
    local.set("short", 1, 0.5)
    local.set("long", 2)

    clock.advance(1)

    assert local.get("short") is None
    assert local.get("long") == 2


def test_setting_a_key_again_restarts_its_time_to_live(clock):
    local = LocalCache(seconds=10)
    local.set("a", 1)
    clock.advance(8)
    local.set("a", 2)
    clock.advance(8)

    assert local.get("a") == 2


def test_a_tiny_time_to_live_expires_in_real_time():
    local = LocalCache(seconds=0.05)
    local.set("a", 1)
    assert local.get("a") == 1
    time.sleep(0.1)
    assert local.get("a") is None


def test_the_oldest_entries_are_evicted_first_when_max_entries_is_reached():
    local = LocalCache(seconds=60, max_entries=3)
    for key in "abcd":
        local.set(key, key.upper())

    assert len(local) == 3
    assert local.get("a") is None
    assert [local.get(k) for k in "bcd"] == ["B", "C", "D"]

    local.set("b", "B2")  # written again: now the newest
    local.set("e", "E")
    assert local.get("c") is None
    assert [local.get(k) for k in "bde"] == ["B2", "D", "E"]


def test_the_oldest_entries_are_evicted_first_when_max_bytes_is_reached():
    local = LocalCache(seconds=60, max_bytes=10, size=len)
    local.set("a", b"aaaa")
    local.set("b", b"bbbb")
    local.set("c", b"cccc")  # 12 bytes: "a" goes

    assert local.get("a") is None
    assert (local.get("b"), local.get("c")) == (b"bbbb", b"cccc")

    local.set("d", b"dddddd")  # 14 bytes: "b" goes, then 10 fit
    assert local.get("b") is None
    assert (local.get("c"), local.get("d")) == (b"cccc", b"dddddd")


def test_replacing_or_dropping_an_entry_gives_its_bytes_back():
    local = LocalCache(seconds=60, max_bytes=10, size=len)
    local.set("a", b"aaaaaaaa")
    local.set("a", b"a")  # 1 byte now, not 9
    local.set("b", b"bbbbbbbbb")  # 10 bytes: both fit
    assert (local.get("a"), local.get("b")) == (b"a", b"bbbbbbbbb")

    local.pop("b")
    local.set("c", b"ccccccccc")  # 10 bytes again
    assert (local.get("a"), local.get("c")) == (b"a", b"ccccccccc")


def test_expired_entries_give_their_bytes_back(clock):
    local = LocalCache(seconds=1, max_bytes=10, size=len)
    local.set("a", b"aaaaaaaa")
    clock.advance(2)
    assert local.get("a") is None

    local.set("b", b"bb")
    local.set("c", b"cccccccc")  # 10 bytes: nothing needs evicting
    assert (local.get("b"), local.get("c")) == (b"bb", b"cccccccc")


def test_a_value_larger_than_max_bytes_is_not_stored_and_evicts_nothing():
    local = LocalCache(seconds=60, max_bytes=10, size=len)
    local.set("small", b"ssss")

    local.set("big", b"x" * 11)

    assert local.get("big") is None
    assert local.get("small") == b"ssss"
    assert len(local) == 1


def test_a_value_too_large_to_store_does_not_leave_the_old_value_of_its_key_behind():
    # set(k, new) must never leave get(k) answering an older value than `new`.
    local = LocalCache(seconds=60, max_bytes=10, size=len)
    local.set("k", b"old")

    local.set("k", b"n" * 11)

    assert local.get("k") is None


def test_clear_all_empties_every_local_cache_of_the_process():
    first = LocalCache(seconds=60)
    second = LocalCache(seconds=60, max_bytes=100, size=len)
    first.set("a", 1)
    second.set("b", b"bytes")

    LocalCache.clear_all()

    assert (first.get("a"), second.get("b")) == (None, None)
    assert len(first) == len(second) == 0
    second.set("c", b"x" * 100)  # its byte count was reset too: a full-size value fits
    assert second.get("c") == b"x" * 100


def test_clear_all_reaches_the_caches_the_application_keeps():
    from billing import entitlements
    from marketdata import candle_cache, selectors

    for local in (entitlements._local, selectors._instruments):
        local.set("probe", object())
    candle_cache._pages.set("probe", candle_cache.CandlePage(json=b"[]", more_from=None))

    LocalCache.clear_all()

    assert entitlements._local.get("probe") is None
    assert selectors._instruments.get("probe") is None
    assert candle_cache._pages.get("probe") is None


def test_a_value_read_while_another_thread_invalidated_it_is_not_stored():
    local = LocalCache(seconds=60)
    mark = local.mark()  # a request starts reading the source...
    local.pop("key")  # ...another thread changes it and invalidates...
    local.set("key", "read before the change", since=mark)  # ...the old read comes back

    assert local.get("key") is None
    fresh = local.mark()
    local.set("key", "read after the change", since=fresh)
    assert local.get("key") == "read after the change"


def test_expiry_is_not_an_invalidation(clock):
    local = LocalCache(seconds=1)
    local.set("old", 1)
    mark = local.mark()
    clock.advance(2)
    assert local.get("old") is None  # expired

    local.set("new", 2, since=mark)

    assert local.get("new") == 2
