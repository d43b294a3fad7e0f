"""Candle pages kept in memory until the instrument's candles change.

Charts ask for the same latest page again and again, and many clients watch the same
markets, so the candles endpoint answers repeated requests from memory. A page is
stored under the instrument's candle version, a token in the shared cache that every
write of 1-minute candles replaces (`candles_changed`, called by
`services.candles_upsert`, the one place candles are written). A reader takes the
version first and the rows second, so a page is never older than the version it is
stored under, and a write makes every page of its instrument unreachable in every
process. A live market rewrites its open minute about once a second; its pages are
rebuilt that often, and historical ranges stay cached.

Each process reads an instrument's version at most every VERSION_LOCAL_SECONDS (a
quarter second) and otherwise reuses it, which saves a round trip on the hottest
request: a page may trail a write made by another process (the feed runner) by that
long, on top of the feed's own batching. The live stream, not REST, is the real-time
path. A write made in this process applies at once.

The page also depends on which buckets are final, which moves with the clock: the key
holds the bucket that "now" falls in. Without the shared cache (an outage) nothing is
cached and every request reads the database.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from django.core.cache import cache

from quantsaas.cache import LocalCache

logger = logging.getLogger(__name__)

PAGE_SECONDS = 300  # an upper bound; a version change retires a page sooner
PAGES_MAX_BYTES = 64 * 1024 * 1024  # per process
VERSION_LOCAL_SECONDS = 0.25

_versions = LocalCache(seconds=VERSION_LOCAL_SECONDS, max_entries=20_000)


def _version_key(instrument_id: int) -> str:
    return f"md:candles:version:{instrument_id}"


# Instruments whose write could not replace the version (the shared cache was down):
# announced again with the next write of this process, which on a live feed is a second
# later. Until then other processes may serve their older pages (PAGE_SECONDS at most).
_unannounced: set[int] = set()


def candles_changed(instrument_ids: Iterable[int]) -> None:
    """Retire every cached page of these instruments (called on each candle write)."""
    changed = _unannounced | set(instrument_ids)
    for instrument_id in changed:
        _versions.pop(instrument_id)
    try:
        cache.set_many({_version_key(i): uuid.uuid4().hex for i in changed}, None)
    except Exception:  # pages of these instruments must not outlive the write
        logger.exception("could not retire cached candle pages; clearing this process's")
        _pages.clear()
        _unannounced.update(changed)
    else:
        _unannounced.difference_update(changed)


def candles_version(instrument_id: int) -> str | None:
    """The instrument's current candle version, or None when the cache is unavailable."""
    version: str | None = _versions.get(instrument_id)
    if version is not None:
        return version
    mark = _versions.mark()
    key = _version_key(instrument_id)
    try:
        version = cache.get(key)
        if version is None:  # first read, or the cache lost it: any new token will do
            cache.add(key, uuid.uuid4().hex, None)
            version = cache.get(key)
    except Exception:
        logger.warning("candle version unavailable; reading the database", exc_info=True)
        # Writes during the outage cannot replace versions: pages kept from before it
        # must not be served under the old version once the cache is back.
        _pages.clear()
        return None
    _versions.set(instrument_id, version, since=mark)
    return version


@dataclass(frozen=True)
class CandlePage:
    """One page as the API answers it: the rows' JSON, and where the next page starts.

    Kept as JSON only (a tenth of the memory of the row dicts); CSV answers parse it.
    """

    json: bytes
    more_from: int | None


_pages = LocalCache(
    seconds=PAGE_SECONDS,
    max_entries=4_096,
    max_bytes=PAGES_MAX_BYTES,
    size=lambda page: len(page.json),
)


def candle_page_cached(
    *, instrument_id: int, query: tuple[Hashable, ...], build: Callable[[], CandlePage]
) -> CandlePage:
    """The page for `query` (everything the page depends on but the data), built once."""
    version = candles_version(instrument_id)
    if version is None:
        return build()
    key = (instrument_id, version, *query)
    page: CandlePage | None = _pages.get(key)
    if page is None:
        page = build()
        _pages.set(key, page)
    return page
