"""Caching shared by every thread: Django's Redis cache made cheap per call, and a
local TTL cache.

Django builds a cache client per thread, and under ASGI every request runs in a
fresh thread context, so the stock client opens a new Redis connection per
request; it also builds a new `redis.Redis` object for every single command.
redis-py pools and clients are thread-safe: one pool per URL and one client per
pool keep connections warm and a cache read down to the command itself.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Hashable
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings
from django.core.cache.backends import redis as django_redis

_pools: dict[tuple[str, tuple[tuple[str, str], ...]], redis.ConnectionPool] = {}
_clients: dict[redis.ConnectionPool, redis.Redis] = {}
_lock = threading.Lock()


class SharedConnectionPool(redis.ConnectionPool):
    # Returns the one shared plain pool for these arguments, not an instance of this class
    # (the stubs expect Self): the class is only the hook Django's cache calls.
    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> redis.ConnectionPool:  # type: ignore[override]
        key = (url, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        with _lock:
            pool = _pools.get(key)
            if pool is None:
                pool = _pools[key] = redis.ConnectionPool.from_url(url, **kwargs)
            return pool


class _SharedClientCacheClient(django_redis.RedisCacheClient):
    def get_client(
        self, key: str | bytes | memoryview[int] | None = None, *, write: bool = False
    ) -> redis.Redis:
        # Django's private pool and client factory, which django-stubs do not declare.
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
        client = _clients.get(pool)
        if client is None:
            with _lock:
                client = _clients.setdefault(pool, self._client(connection_pool=pool))  # type: ignore[attr-defined]
        return client


class RedisCache(django_redis.RedisCache):
    """Django's Redis cache with one client per pool (see the module docstring)."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _SharedClientCacheClient


_local_caches: weakref.WeakSet[LocalCache] = weakref.WeakSet()


class LocalCache:
    """A small in-process cache with a time to live, for answers read on every request.

    For values that are cheap to be briefly stale across processes but expensive to
    fetch per request (a Redis round trip, an ORM query): entitlements, instruments,
    rendered candle pages. `clear` drops everything in this process; other processes
    catch up within the time to live, which each caller chooses and documents.
    Oldest entries are evicted first once `max_entries` or `max_bytes` is reached
    (`size` tells an entry's weight in bytes).

    A value read from its source while another thread invalidated it (`pop`,
    `clear`) must not be stored afterwards: callers take `mark()` before reading
    the source and pass it to `set(since=...)`, which then stores nothing.
    """

    def __init__(
        self,
        *,
        seconds: float,
        max_entries: int = 10_000,
        max_bytes: int | None = None,
        size: Callable[[Any], int] | None = None,
    ) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._size = size or (lambda value: 0)
        # key -> (deadline, weight, value); insertion ordered
        self._entries: dict[Hashable, tuple[float, int, Any]] = {}
        self._bytes = 0
        self._invalidations = 0
        self._lock = threading.Lock()
        _local_caches.add(self)

    @staticmethod
    def clear_all() -> None:
        """Empty every local cache of this process (tests start each case from nothing)."""
        for local in list(_local_caches):
            local.clear()

    def get(self, key: Hashable, default: Any = None) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return default
        if entry[0] < time.monotonic():
            with self._lock:
                self._discard(key)
            return default
        return entry[2]

    def mark(self) -> int:
        """Take before reading a value's source; pass to `set(since=...)`."""
        return self._invalidations

    def set(
        self, key: Hashable, value: Any, seconds: float | None = None, *, since: int | None = None
    ) -> None:
        weight = self._size(value)
        deadline = time.monotonic() + (self.seconds if seconds is None else seconds)
        with self._lock:
            if since is not None and since != self._invalidations:
                return  # invalidated while the caller was reading the source
            if self.max_bytes is not None and weight > self.max_bytes:
                self._discard(key)  # too large to keep, and the old value is no longer the answer
                return
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (deadline, weight, value)
            self._bytes += weight
            while len(self._entries) > self.max_entries or (
                self.max_bytes is not None and self._bytes > self.max_bytes
            ):
                oldest = next(iter(self._entries))
                self._bytes -= self._entries.pop(oldest)[1]

    def pop(self, key: Hashable) -> None:
        """Invalidate `key`: its value changed at the source."""
        with self._lock:
            self._invalidations += 1
            self._discard(key)

    def clear(self) -> None:
        with self._lock:
            self._invalidations += 1
            self._entries.clear()
            self._bytes = 0

    def _discard(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[1]

    def __len__(self) -> int:
        return len(self._entries)


@lru_cache(maxsize=4)
def counters_redis_for(url: str) -> redis.Redis:
    """The client for atomic counters (rate limits, quotas, usage) at `url`.

    Short timeouts: a hung Redis must cost a request milliseconds, not seconds.
    """
    return redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)


def counters_redis() -> redis.Redis | None:
    """The Redis that holds counters, or None in embedded mode (no REDIS_URL)."""
    return counters_redis_for(settings.REDIS_URL) if settings.REDIS_URL else None
