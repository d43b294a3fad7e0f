"""The pricing page's comparison table: every plan limit in the units people use.

"15 minutes", "7 days", "60 requests a minute": a customer compares plans by what
they can do, not by the database's seconds and counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from billing.models import Plan


def duration_words(seconds: int) -> str:
    """900 -> "15 minutes", 3600 -> "1 hour", 45 -> "45 seconds"."""
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def history_words(days: int | None) -> str:
    if days is None:
        return "Unlimited"
    if days >= 365 and days % 365 == 0:
        years = days // 365
        return f"{years} year{'s' if years != 1 else ''}"
    return f"{days} day{'s' if days != 1 else ''}"


def count_words(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def conflate_words(floor_ms: int) -> str:
    """0 -> "Every update", 1000 -> "1 a second per channel", 500 -> "1 every 500 ms..."."""
    if floor_ms == 0:
        return "Every update"
    if floor_ms == 1000:
        return "1 a second per channel"
    if floor_ms % 1000 == 0:
        return f"1 every {duration_words(floor_ms // 1000)} per channel"
    return f"1 every {floor_ms:,} ms per channel"


@dataclass(frozen=True)
class Row:
    label: str
    values: list[str]


def plan_comparison(plans: list[Plan]) -> list[Row]:
    """One row per limit, one value per plan, in the order of `plans`."""

    def row(label: str, value: Callable[[Plan], str]) -> Row:
        return Row(label=label, values=[value(plan) for plan in plans])

    return [
        row("Price", lambda p: "Free" if p.is_free else f"${p.price_display} a month"),
        row(
            "Market data",
            lambda p: (
                f"Delayed {duration_words(p.stream_delay_seconds)}"
                if p.stream_delay_seconds
                else "Real time"
            ),
        ),
        row("History", lambda p: history_words(p.history_days)),
        row("REST API", lambda p: f"{p.requests_per_minute:,} requests a minute"),
        row("Stream connections", lambda p: f"{p.ws_connections:,} at a time"),
        row(
            "Channels per connection",
            lambda p: count_words(p.ws_subscriptions, "channel"),
        ),
        row("Order book depth", lambda p: count_words(p.book_depth, "level")),
        row("Stream updates", lambda p: conflate_words(p.stream_conflate_floor_ms)),
        row("API keys", lambda p: count_words(p.api_keys, "key")),
        row(
            "Analytics (OFI, VPIN, volatility, options)",
            lambda p: "Included" if p.analytics else "Not included",
        ),
        row(
            "Backtests",
            lambda p: f"{p.backtests_per_day:,} a day" if p.backtests_per_day else "Not included",
        ),
    ]
