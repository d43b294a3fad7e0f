"""What a stream yields: data messages and the events a program must be able to tell apart.

Data arrives as ``Snapshot`` and ``Update``. Everything that means "you did not
get every message" is its own type (``Lagged``, ``Gap``, ``ResumeUnavailable``,
``ChecksumMismatch``), so a program can ``match`` on it instead of inferring it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quantsaas_client.stream.book import OrderBook


@dataclass(frozen=True)
class Welcome:
    """A connection was authenticated; ``reconnect`` is False only for the first."""

    plan: str
    limits: dict[str, Any]
    reconnect: bool = False


@dataclass(frozen=True)
class Subscribed:
    channels: list[str]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Unsubscribed:
    channels: list[str]


@dataclass(frozen=True)
class Snapshot:
    """The full state of a stateful channel (book, ticker, candles_1m); resets ``seq``.

    ``book`` is the client's book for a ``book`` channel after applying it (a
    live object: copy it to keep this state).
    """

    channel: str
    seq: int
    data: Any
    book: OrderBook | None = None


@dataclass(frozen=True)
class Update:
    """Messages ``from_seq``..``seq`` of a channel; ``from_seq`` is the previous ``seq`` + 1.

    Usually one message (``from_seq == seq``). When messages arrived faster than
    the connection sent them, the server merges them into one frame: trades'
    ``data`` is then every trade of those messages, a book's is the combined change.
    """

    channel: str
    seq: int
    data: Any
    book: OrderBook | None = None
    from_seq: int = -1  # -1: the same as ``seq`` (set in __post_init__)

    def __post_init__(self) -> None:
        if self.from_seq < 0:
            object.__setattr__(self, "from_seq", self.seq)


@dataclass(frozen=True)
class Lagged:
    """The server skipped ``from_seq``..``to_seq`` for this connection (we read too
    slowly). Stateful channels get a fresh snapshot next; for trades, fill from REST."""

    channel: str
    missed: int
    from_seq: int
    to_seq: int


@dataclass(frozen=True)
class Gap:
    """Messages were lost without the server saying so.

    ``reason``: ``"gap"`` (seq jumped), ``"reset"`` (seq restarted: the feed
    restarted), or ``"resume_not_supported"`` (the server could not resume after
    a reconnect). ``expected_seq`` is what should have come, ``received_seq``
    what did. A ``book`` channel re-subscribes for a fresh snapshot by itself.
    """

    channel: str
    expected_seq: int
    received_seq: int
    reason: str = "gap"


@dataclass(frozen=True)
class ResumeUnavailable:
    """After a reconnect the server no longer held the messages after ``last_seq``
    (its retention is at least 5 minutes); stateful channels get a snapshot."""

    channel: str
    last_seq: int | None
    oldest_seq: int | None
    message: str = ""


@dataclass(frozen=True)
class ChecksumMismatch:
    """A book delta left a book whose checksum differs from the server's; the client
    re-subscribes for a fresh snapshot and ``book`` is None on updates until it comes."""

    channel: str
    seq: int
    expected: int
    computed: int


@dataclass(frozen=True)
class Reconnecting:
    """The connection dropped; the next attempt comes after ``delay`` seconds.

    ``code`` is the close code when the server closed (1012: it is restarting, so
    the delay is 0), None for a network failure.
    """

    attempt: int
    delay: float
    code: int | None
    reason: str


@dataclass(frozen=True)
class StreamErrorFrame:
    """An ``error`` frame the stream did not handle itself (e.g. ``unknown_channel``,
    ``quota_exceeded``); the connection stays open."""

    code: str
    message: str
    details: dict[str, Any]


@dataclass(frozen=True)
class Heartbeat:
    ts: int


@dataclass(frozen=True)
class Pong:
    id: Any
    rtt: float | None = None


@dataclass(frozen=True)
class Other:
    """A frame of a type this client version does not know (forward compatibility)."""

    type: str
    raw: dict[str, Any]


Event = (
    Welcome
    | Subscribed
    | Unsubscribed
    | Snapshot
    | Update
    | Lagged
    | Gap
    | ResumeUnavailable
    | ChecksumMismatch
    | Reconnecting
    | StreamErrorFrame
    | Heartbeat
    | Pong
    | Other
)
