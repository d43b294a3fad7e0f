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

import redis
from django.core.cache.backends import redis as django_redis

_pools: dict[tuple, redis.ConnectionPool] = {}
_clients: dict[redis.ConnectionPool, redis.Redis] = {}
_lock = threading.Lock()


class SharedConnectionPool(redis.ConnectionPool):
    @classmethod
    def from_url(cls, url: str, **kwargs) -> redis.ConnectionPool:
        key = (url, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        with _lock:
            pool = _pools.get(key)
            if pool is None:
                pool = _pools[key] = redis.ConnectionPool.from_url(url, **kwargs)
            return pool


class _SharedClientCacheClient(django_redis.RedisCacheClient):
    def get_client(self, key=None, *, write: bool = False) -> redis.Redis:
        pool = self._get_connection_pool(write)
        client = _clients.get(pool)
        if client is None:
            with _lock:
                client = _clients.setdefault(pool, self._client(connection_pool=pool))
        return client


class RedisCache(django_redis.RedisCache):
    """Django's Redis cache with one client per pool (see the module docstring)."""

    def __init__(self, server, params) -> None:
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
        size=None,
    ) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._size = size or (lambda value: 0)
        self._entries: dict = {}  # key -> (deadline, weight, value); insertion ordered
        self._bytes = 0
        self._invalidations = 0
        self._lock = threading.Lock()
        _local_caches.add(self)

    @staticmethod
    def clear_all() -> None:
        """Empty every local cache of this process (tests start each case from nothing)."""
        for local in list(_local_caches):
            local.clear()

    def get(self, key, default=None):
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

    def set(self, key, value, seconds: float | None = None, *, since: int | None = None) -> None:
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

    def pop(self, key) -> None:
        """Invalidate `key`: its value changed at the source."""
        with self._lock:
            self._invalidations += 1
            self._discard(key)

    def clear(self) -> None:
        with self._lock:
            self._invalidations += 1
            self._entries.clear()
            self._bytes = 0

    def _discard(self, key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[1]

    def __len__(self) -> int:
        return len(self._entries)
