"""Feed health per stream, kept in the cache (Redis in production) by the runner.

Each stream (exchange, kind, symbol) is one cache entry written about once a
second by the runner that owns it, with a TTL: when a runner dies its entries
expire and the exchange reads as disconnected, with no cleanup step to forget.
Readers enumerate the configured instruments rather than an index of keys, so
several shards writing at once can never lose each other's entries.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from django.core.cache import cache

from marketdata.models import Instrument

HEALTH_TTL_SECONDS = 30
STALE_AFTER_MS = 60_000
KINDS = ("trades", "book", "ticker")


def _key(exchange: str, kind: str, symbol: str) -> str:
    return f"md:feedhealth:{exchange}:{kind}:{symbol}"


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
    _window_start: float = field(default_factory=time.monotonic, repr=False)
    _window_messages: int = field(default=0, repr=False)

    @property
    def key(self) -> str:
        return _key(self.exchange, self.kind, self.symbol)

    def message(self, count: int = 1) -> None:
        self.connected = True
        self.last_message_ms = time.time_ns() // 1_000_000
        self.messages += count
        self._window_messages += count

    def snapshot(self) -> dict:
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed >= 1.0:
            self.messages_per_second = round(self._window_messages / elapsed, 2)
            self._window_start, self._window_messages = now, 0
        data = asdict(self)
        for private in ("_window_start", "_window_messages"):
            data.pop(private)
        return data


def health_store(streams: list[StreamHealth]) -> None:
    """Write the runner's stream health in one round trip."""
    cache.set_many({s.key: s.snapshot() for s in streams}, HEALTH_TTL_SECONDS)


def _summary(streams: list[dict], now: int) -> dict:
    ages = [now - s["last_message_ms"] for s in streams if s.get("last_message_ms")]
    connected = [s for s in streams if s.get("connected")]
    if not streams:
        state = "unknown"
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


def feed_health(exchange: str | None = None) -> dict[str, dict]:
    """Health per exchange id: state (ok, degraded, down, unknown), connected, last
    message age, messages/s, gaps repaired, and the per-stream entries.

    "unknown" means no runner reported within the TTL (none started, or it died).
    """
    instruments = Instrument.objects.filter(active=True).values_list("exchange_id", "ccxt_symbol")
    if exchange is not None:
        instruments = instruments.filter(exchange_id=exchange)
    keys: dict[str, list[str]] = {}
    for exchange_id, symbol in instruments:
        keys.setdefault(exchange_id, []).extend(_key(exchange_id, k, symbol) for k in KINDS)
    if exchange is not None:
        keys.setdefault(exchange, [])
    stored = cache.get_many([key for group in keys.values() for key in group])
    now = time.time_ns() // 1_000_000
    report = {}
    for exchange_id, group in sorted(keys.items()):
        streams = [stored[key] for key in group if key in stored]
        for stream in streams:
            last = stream.get("last_message_ms")
            stream["last_message_age_ms"] = now - last if last else None
        report[exchange_id] = _summary(streams, now)
    return report


def feeds_readiness() -> dict:
    """The /readyz entry. Not ready only when runners reported and every stream is down:
    a single slow exchange must not pull the web tier out of the load balancer, but a
    feed that is dead everywhere means the product serves stale data and should say so.
    """
    report = feed_health()
    states = {exchange: item["state"] for exchange, item in report.items()}
    reporting = [s for s in states.values() if s != "unknown"]
    ok = not reporting or any(s in ("ok", "degraded") for s in reporting)
    return {"ok": ok, "exchanges": states}


def readiness_register() -> None:
    """Add the feeds to /readyz; called from the marketdata app's ready()."""
    from quantsaas.health import readiness_check_register

    readiness_check_register("feeds", feeds_readiness)
