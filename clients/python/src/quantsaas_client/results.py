"""Lists that page themselves: iterate records, and the next page is fetched on demand.

A list answer is ``{"data": [...], "next": url | null}`` (plus metadata on some
series, e.g. ``estimator``). Iteration is lazy, so ``for trade in
client.trades(...)`` over a month of history holds one page in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Record = dict[str, Any]
PageFetch = Callable[[str | None], dict[str, Any]]

# Columns whose integer milliseconds pandas should show as UTC timestamps.
TIME_COLUMNS = ("ts", "recv_ts", "created_at", "expires_at", "revoked_at", "last_used_at")


class Records:
    """The records of a list endpoint, across all its pages.

    Iterating fetches pages as it goes; iterating again starts again from the
    first page. ``meta`` holds the first page's fields other than ``data`` and
    ``next``. ``to_list()`` and ``to_pandas()`` read everything.
    """

    def __init__(self, fetch: PageFetch, *, limit: int | None = None) -> None:
        self._fetch = fetch
        self._limit = limit
        self.meta: dict[str, Any] = {}
        self.pages_fetched = 0

    def pages(self) -> Iterator[list[Record]]:
        """Each page's records, following ``next`` until the server says there is no more."""
        token: str | None = None
        first = True
        left = self._limit
        while True:
            body = self._fetch(token)
            self.pages_fetched += 1
            if first:
                self.meta = {k: v for k, v in body.items() if k not in ("data", "next")}
                first = False
            data = list(body.get("data") or [])
            if left is not None:
                data = data[:left]
                left -= len(data)
            if data:
                yield data
            token = body.get("next")
            if not token or (left is not None and left <= 0):
                return

    def __iter__(self) -> Iterator[Record]:
        for page in self.pages():
            yield from page

    def to_list(self) -> list[Record]:
        return list(self)

    def to_pandas(self, *, index: str | None = "ts") -> Any:
        """A ``pandas.DataFrame`` of every record (needs pandas: ``pip install pandas``).

        Millisecond time columns become timezone-aware UTC timestamps; ``index``
        (default ``ts``) becomes the index when present.
        """
        return records_to_pandas(self.to_list(), index=index)


def records_to_pandas(records: list[Record], *, index: str | None = "ts") -> Any:
    try:
        import pandas as pd
    except ImportError:  # an optional dependency: say how to get it
        raise ImportError(
            "to_pandas() needs pandas: pip install pandas (or quantsaas-client[pandas])"
        ) from None
    frame = pd.DataFrame.from_records(records)
    for column in TIME_COLUMNS:
        if column in frame.columns:
            frame[column] = pd.to_datetime(frame[column], unit="ms", utc=True)
    if index and index in frame.columns:
        frame = frame.set_index(index)
    return frame
