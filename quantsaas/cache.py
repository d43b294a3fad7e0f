"""One Redis connection pool per URL for Django's cache, shared by every thread.

Django builds a cache client per thread, and under ASGI every request runs in a
fresh thread context, so the stock client opens a new Redis connection per
request. redis-py pools are thread-safe: sharing one keeps connections warm.
"""

from __future__ import annotations

import threading

import redis

_pools: dict[tuple, redis.ConnectionPool] = {}
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
