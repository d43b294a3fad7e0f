"""API keys by hash in the shared cache, so an authenticated request costs no query.

Every programmatic request authenticates, and the ORM lookup (key plus organization)
was one of its largest costs. The cached key is dropped whenever the key or its
organization is saved or deleted (accounts.signals). Each process also keeps keys
for LOCAL_SECONDS (one second), as entitlements do: a revoked key is refused at once by
the process that revoked it and within a second by every other. Keys are kept
pickled, so no request can modify another's instance.
"""

from __future__ import annotations

import logging
import pickle

from django.core.cache import cache

from accounts.models import ApiKey
from quantsaas.cache import LocalCache

logger = logging.getLogger(__name__)

CACHE_SECONDS = 60
LOCAL_SECONDS = 1.0
# What a change leaves in place of the key for a while. A request that read the row just
# before the change would otherwise cache the old row after it: stores only ever add
# (SET NX), so they cannot replace the tombstone, and readers treat it as a miss.
TOMBSTONE = b"changed"
TOMBSTONE_SECONDS = 30
_local = LocalCache(seconds=LOCAL_SECONDS, max_entries=10_000)


def _cache_key(digest: str) -> str:
    return f"accounts:api-key:{digest}"


def api_key_cached(digest: str) -> ApiKey | None:
    """The key (with its organization) stored under `digest`, or None on a miss."""
    pickled = _local.get(digest)
    if pickled is None:
        mark = _local.mark()
        try:
            pickled = cache.get(_cache_key(digest))
        except Exception:  # an optimisation: a cache outage falls back to the database
            logger.warning("API key cache unavailable", exc_info=True)
            return None
        if pickled is None or pickled == TOMBSTONE:
            return None
        _local.set(digest, pickled, since=mark)
    api_key: ApiKey = pickle.loads(pickled)  # noqa: S301 - bytes we pickled ourselves
    return api_key


def api_key_cache_store(api_key: ApiKey) -> None:
    """Cache a key just read from the database, unless it changed meanwhile."""
    pickled = pickle.dumps(api_key, pickle.HIGHEST_PROTOCOL)
    mark = _local.mark()
    try:
        if cache.add(_cache_key(api_key.key_hash), pickled, CACHE_SECONDS):
            _local.set(api_key.key_hash, pickled, since=mark)
    except Exception:
        logger.warning("API key cache unavailable", exc_info=True)


def api_key_cache_forget(*digests: str) -> None:
    """Drop these keys everywhere: the next request reads the database."""
    if not digests:
        return
    for digest in digests:
        _local.pop(digest)
    try:
        cache.set_many({_cache_key(digest): TOMBSTONE for digest in digests}, TOMBSTONE_SECONDS)
    except Exception:
        logger.warning("API key cache unavailable", exc_info=True)
