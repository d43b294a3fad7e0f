"""One published message (or several merged) as the frames every subscriber gets.

A message's ``data`` stays the JSON text the feed runner serialised: frames are
built around those bytes once per message and shared by every subscriber, so
the web process never parses market data on the way through.

Several consecutive messages of a channel can be merged into one frame (a busy
process coalescing, a subscription's ``conflate_ms``, a resume's backlog). The
frame then says which messages it carries: ``seq`` is the newest and
``from_seq`` the oldest, so a client's gap check is ``from_seq == last + 1``
(``from_seq`` is absent when the frame carries one message). Records merge by
kind: trades, ofi and vpin concatenate; candles keep the latest version of each
minute; ticker, bbo and status keep the latest state; book deltas merge into the
union of their levels, the later winning (books.py).

A book message carries its smaller depths' deltas (``views``); ``at_depth``
gives the event a connection of that depth is sent. A book snapshot is cut to
the depth instead.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from marketdata.streaming import frames
from marketdata.streaming.books import BOOK_DEPTH, deltas_merge, snapshot_cut
from marketdata.streaming.protocol import channel_kind
from marketdata.streaming.store import StoredMessage

LATEST_STATE_KINDS = frozenset({"ticker", "status", "bbo"})
ALERTS = "alerts"


def public_name(channel: str) -> str:
    """The name a client knows a channel by: each organization's ``alerts.<id>`` is its
    ``alerts`` (the id is ours, and the channel is only ever its own)."""
    return ALERTS if channel.startswith(ALERTS + ".") else channel


class Event:
    """Frames of one message or of consecutive merged messages, each built on first use.

    ``update_wire``/``snapshot_wire`` are complete WebSocket frames (bytes) that
    daphne connections write as they are; ``update_frame``/``snapshot_frame`` the
    JSON strings for the ASGI path.
    """

    __slots__ = (
        "_forms",
        "channel",
        "from_seq",
        "full_state",
        "parts",
        "raw",
        "records",
        "seq",
        "ts",
        "views",
    )

    def __init__(
        self,
        *,
        channel: str,
        seq: int,
        raw: bytes,
        ts: int,
        records: int = 1,
        from_seq: int | None = None,
        parts: tuple[Event, ...] = (),
        views: dict[int, bytes] | None = None,
        full_state: bool = False,
    ) -> None:
        self.channel, self.seq, self.raw, self.ts = channel, seq, raw, ts
        self.records = records
        self.from_seq = seq if from_seq is None else from_seq
        self.parts = parts  # the single messages a merged event was made of
        self.views = views  # a book delta's smaller depths
        self.full_state = full_state  # a book's whole state (a snapshot), not a delta
        self._forms: dict[str, Any] = {}

    @classmethod
    def stored(cls, channel: str, message: StoredMessage) -> Event:
        return cls(
            channel=channel,
            seq=message.seq,
            raw=message.data,
            ts=message.ts,
            records=message.records,
            views=message.views,
        )

    @classmethod
    def book_state(cls, channel: str, *, seq: int, ts: int, raw: bytes) -> Event:
        """A book's full state at `seq`: what a snapshot of it is made of."""
        return cls(channel=channel, seq=seq, raw=raw, ts=ts, full_state=True)

    def at_depth(self, depth: int) -> Event:
        """This book event as a connection subscribed at `depth` gets it."""
        if depth >= BOOK_DEPTH or not (self.full_state or self.views or self.parts):
            return self
        name = f"depth{depth}"
        event = self._forms.get(name)
        if event is None:
            if self.full_state:
                event = Event.book_state(
                    self.channel, seq=self.seq, ts=self.ts, raw=snapshot_cut(self.raw, depth)
                )
            elif self.parts:
                event = events_merge([part.at_depth(depth) for part in self.parts])
            else:
                event = Event(
                    channel=self.channel,
                    seq=self.seq,
                    # neither a state nor merged: a delta, which has views (see above)
                    raw=cast("dict[int, bytes]", self.views).get(depth, self.raw),
                    ts=self.ts,
                    records=self.records,
                )
            self._forms[name] = event
        return event

    @classmethod
    def of(cls, *, channel: str, seq: int, data: Any, ts: int) -> Event:
        """From parsed data (tests, and the few frames the hub makes itself)."""
        records = len(data) if isinstance(data, list) else 1
        return cls(channel=channel, seq=seq, raw=orjson.dumps(data), ts=ts, records=records)

    @property
    def data(self) -> Any:
        return orjson.loads(self.raw)

    @property
    def singles(self) -> tuple[Event, ...]:
        return self.parts or (self,)

    def _json(self, kind: str) -> bytes:
        body = self._forms.get(kind)
        if body is None:
            head = b'{"type":"%s","channel":%s,"seq":%d' % (
                kind.encode(),
                orjson.dumps(public_name(self.channel)),
                self.seq,
            )
            if self.from_seq != self.seq:
                head += b',"from_seq":%d' % self.from_seq
            body = self._forms[kind] = head + b',"data":' + self.raw + b"}"
        return body

    def _form(self, name: str, kind: str, wire: bool) -> Any:
        form = self._forms.get(name)
        if form is None:
            body = self._json(kind)
            form = self._forms[name] = frames.wire(body) if wire else body.decode()
        return form

    @property
    def update_frame(self) -> str:
        form: str = self._form("update_frame", "update", wire=False)  # typed here: no cast call
        return form

    @property
    def update_wire(self) -> bytes:
        form: bytes = self._form("update_wire", "update", wire=True)  # typed here: no cast call
        return form

    @property
    def snapshot_frame(self) -> str:
        form: str = self._form("snapshot_frame", "snapshot", wire=False)  # typed here: no cast call
        return form

    @property
    def snapshot_wire(self) -> bytes:
        form: bytes = self._form("snapshot_wire", "snapshot", wire=True)  # typed here: no cast call
        return form


def _list_body(raw: bytes) -> bytes:
    return raw.strip()[1:-1].strip()


def events_merge(events: list[Event]) -> Event:
    """One event carrying consecutive `events` of one channel (see the module docstring)."""
    if len(events) == 1:
        return events[0]
    first, last = events[0], events[-1]
    singles = tuple(single for event in events for single in event.singles)
    kind = channel_kind(last.channel)
    if kind in LATEST_STATE_KINDS:
        raw, records = last.raw, 1
    elif kind == "book":
        raw, records = deltas_merge([e.raw for e in events]), 1
    elif kind == "candles_1m":
        by_minute: dict[Any, Any] = {}
        for event in events:
            for candle in orjson.loads(event.raw):
                by_minute[candle.get("ts")] = candle  # the latest version of each minute
        raw, records = orjson.dumps(list(by_minute.values())), len(by_minute)
    else:
        bodies = [body for body in (_list_body(e.raw) for e in events) if body]
        raw = b"[" + b",".join(bodies) + b"]"
        records = sum(e.records for e in events)
    return Event(
        channel=last.channel,
        seq=last.seq,
        raw=raw,
        ts=last.ts,
        records=records,
        from_seq=first.from_seq,
        parts=singles,
    )


def event_after(event: Event, floor: int) -> Event | None:
    """`event` without the messages numbered `floor` or lower (None if nothing is left)."""
    if event.from_seq > floor:
        return event
    if event.seq <= floor:
        return None
    return events_merge([single for single in event.singles if single.seq > floor])
