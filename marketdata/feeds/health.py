"""Feed health per stream, kept in the cache (Redis in production) by the runner.

Each stream (exchange, kind, symbol) is one cache entry written every half second
by the runner that owns it, with a TTL of HEALTH_TTL_SECONDS: when a runner dies
its entries expire within seconds, with no cleanup step to forget. A second entry
per stream, the last report, lives for a day, so a stream whose live entry expired
reads as `down` (a runner reported, then stopped) rather than `unknown` (no runner
ever reported). Readers enumerate the configured instruments rather than an index
of keys, so several shards writing at once can never lose each other's entries.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import NotRequired, TypedDict, cast

from django.core.cache import cache

from marketdata.models import Instrument

HEALTH_INTERVAL_SECONDS = 0.5  # how often the runner writes
HEALTH_TTL_SECONDS = 2  # a dead runner's streams read as down this soon
LAST_REPORT_TTL_SECONDS = 86_400
STALE_AFTER_MS = 60_000
KINDS = ("trades", "book", "ticker")


def _key(exchange: str, kind: str, symbol: str) -> str:
    return f"md:feedhealth:{exchange}:{kind}:{symbol}"


def _last_key(key: str) -> str:
    return f"{key}:last"


class StreamEntry(TypedDict):
    """One stream's stored health (:meth:`StreamHealth.snapshot`), as readers see it."""

    exchange: str
    kind: str
    symbol: str
    connected: bool
    last_message_ms: int | None
    messages: int
    gaps_repaired: int
    trades_recovered: int
    book_resyncs: int
    reconnects: int
    messages_per_second: float
    unreachable: bool
    # Added by readers: the runner stopped reporting, and how old the last message is.
    expired: NotRequired[bool]
    last_message_age_ms: NotRequired[int | None]


class FeedSummary(TypedDict):
    """One exchange's health (:func:`feed_health`); the totals are None with no stream."""

    state: str
    connected: bool | None
    last_message_age_ms: int | None
    messages_per_second: float | None
    gaps_repaired: int | None
    streams: list[StreamEntry]


@dataclass
class StreamHealth:
    """Counters one stream updates in memory; `snapshot()` is what gets stored."""

    exchange: str
    kind: str
    symbol: str
    connected: bool = False
    last_message_ms: int | None = None
    messages: int = 0
    gaps_repaired: int = 0
    trades_recovered: int = 0
    book_resyncs: int = 0
    reconnects: int = 0
    messages_per_second: float = 0.0
    # The venue never answered (no route, DNS, refused): a deployment without access to
    # it, not an outage. Cleared by the first message.
    unreachable: bool = False
    _window_start: float = field(default_factory=time.monotonic, repr=False)
    _window_messages: int = field(default=0, repr=False)

    @property
    def key(self) -> str:
        return _key(self.exchange, self.kind, self.symbol)

    def message(self, count: int = 1) -> None:
        self.connected = True
        self.unreachable = False
        self.last_message_ms = time.time_ns() // 1_000_000
        self.messages += count
        self._window_messages += count

    def snapshot(self) -> StreamEntry:
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed >= 1.0:
            self.messages_per_second = round(self._window_messages / elapsed, 2)
            self._window_start, self._window_messages = now, 0
        data = asdict(self)
        for private in ("_window_start", "_window_messages"):
            data.pop(private)
        return cast(StreamEntry, data)  # the public fields, as declared above


def _alive_key(exchange: str) -> str:
    return f"md:feed-alive:{exchange}"


def health_store(streams: list[StreamHealth]) -> None:
    """Write the runner's stream health: the live entries, the last reports, and one
    short-lived key per exchange that says a runner is alive (feeds_alive)."""
    snapshots = {s.key: s.snapshot() for s in streams}
    cache.set_many(snapshots, HEALTH_TTL_SECONDS)
    cache.set_many({_last_key(k): v for k, v in snapshots.items()}, LAST_REPORT_TTL_SECONDS)
    cache.set_many({_alive_key(s.exchange): True for s in streams}, HEALTH_TTL_SECONDS)


def feeds_alive(exchanges: list[str]) -> set[str]:
    """The exchanges whose runner wrote health within HEALTH_TTL_SECONDS: one Redis call,
    no database, cheap enough for every web process to ask every second."""
    stored = cache.get_many([_alive_key(e) for e in exchanges])
    return {e for e in exchanges if _alive_key(e) in stored}


def _summary(streams: list[StreamEntry], now: int) -> FeedSummary:
    ages = [now - last for s in streams if (last := s.get("last_message_ms"))]
    connected = [s for s in streams if s.get("connected")]
    if not streams:
        state = "unknown"
    elif all(s.get("unreachable") for s in streams):
        state = "unreachable"
    elif connected and ages and min(ages) < STALE_AFTER_MS:
        state = "ok" if len(connected) == len(streams) else "degraded"
    else:
        state = "down"
    return {
        "state": state,
        "connected": bool(connected) if streams else None,
        "last_message_age_ms": min(ages) if ages else None,
        "messages_per_second": round(sum(s.get("messages_per_second", 0) for s in streams), 2)
        if streams
        else None,
        "gaps_repaired": sum(s.get("gaps_repaired", 0) for s in streams) if streams else None,
        "streams": streams,
    }


def feed_health(exchange: str | None = None) -> dict[str, FeedSummary]:
    """Health per exchange id: state (ok, degraded, down, unreachable, unknown), connected, last
    message age, messages/s, gaps repaired, and the per-stream entries.

    "unknown" means no runner ever reported (within a day); a stream whose runner
    stopped reporting for HEALTH_TTL_SECONDS counts as disconnected (`expired: true`).
    """
    instruments = Instrument.objects.filter(active=True).values_list("exchange_id", "ccxt_symbol")
    if exchange is not None:
        instruments = instruments.filter(exchange_id=exchange)
    keys: dict[str, list[str]] = {}
    for exchange_id, symbol in instruments:
        keys.setdefault(exchange_id, []).extend(_key(exchange_id, k, symbol) for k in KINDS)
    if exchange is not None:
        keys.setdefault(exchange, [])
    wanted = [key for group in keys.values() for key in group]
    stored = cache.get_many(wanted + [_last_key(key) for key in wanted])
    now = time.time_ns() // 1_000_000
    report = {}
    for exchange_id, group in sorted(keys.items()):
        streams: list[StreamEntry] = []
        for key in group:
            if key in stored:
                streams.append(stored[key])
            elif _last_key(key) in stored:  # the runner stopped reporting: it is gone
                last: StreamEntry = stored[_last_key(key)]
                streams.append({**last, "connected": False, "expired": True})
        for stream in streams:
            last_ms = stream.get("last_message_ms")
            stream["last_message_age_ms"] = now - last_ms if last_ms else None
        report[exchange_id] = _summary(streams, now)
    return report


def feeds_readiness() -> dict[str, object]:
    """The /readyz entry. Not ready only when runners reported and every stream is down:
    a single slow exchange must not pull the web tier out of the load balancer, but a
    feed that is dead everywhere means the product serves stale data and should say so.
    """
    report = feed_health()
    states = {exchange: item["state"] for exchange, item in report.items()}
    # An unreachable venue (this deployment has no route to it) says so without failing.
    reporting = [s for s in states.values() if s not in ("unknown", "unreachable")]
    ok = not reporting or any(s in ("ok", "degraded") for s in reporting)
    return {"ok": ok, "exchanges": states}


def readiness_register() -> None:
    """Add the feeds to /readyz; called from the marketdata app's ready()."""
    from quantsaas.health import readiness_check_register

    readiness_check_register("feeds", feeds_readiness)
