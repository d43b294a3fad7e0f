"""The in-memory alert evaluator: which rules does this tick fire?

Plain Python with no Django or I/O, so the feed runner can call it on every
published event and the bench can time it alone. Rules arrive as ``Rule`` values
(``Evaluator.rules_set``, every few seconds from the database); per series it
keeps the rules sorted by level, so a move from the previous value to the current
one fires exactly the rules whose level lies between them: two bisections and a
slice, whatever the number of rules (``CrossIndex``).

Semantics (docs/alerts.md):
- "above" fires when the value rises through the level (previous < level <=
  current), "below" when it falls through (previous > level >= current). Firing
  is tied to the crossing itself, so a rule re-arms only by the value going back
  across; the first value a series sees is a baseline, never a crossing.
- A crossing within a rule's cooldown of its last firing is not reported.
- percent_move compares each trade with the last price of the second
  ``window_seconds`` earlier; thresholds are percent, "below" meaning a fall.
- feed_down fires once a venue has been reported not connected for
  ``window_seconds``, and re-arms when it is connected again.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ABOVE, BELOW = "above", "below"
PRICE, PERCENT_MOVE, OFI, VPIN, FEED_DOWN = "price", "percent_move", "ofi", "vpin", "feed_down"
MAX_WINDOW_SECONDS = 86_400


@dataclass(slots=True, eq=False)
class Rule:
    """What the evaluator needs of an alert rule, plus its firing state."""

    id: int
    organization_id: int
    kind: str
    exchange: str
    symbol: str  # ccxt form; "" for feed_down
    direction: str = ABOVE
    threshold: float = 0.0
    window_seconds: int = 0
    cooldown_ms: int = 0
    name: str = ""
    last_fired_ms: int = 0
    armed: bool = True  # feed_down only: fired for the current outage already?

    def carry_state(self, old: Rule) -> None:
        self.last_fired_ms = max(self.last_fired_ms, old.last_fired_ms)
        self.armed = old.armed


@dataclass(frozen=True, slots=True)
class Firing:
    rule: Rule
    value: float
    previous: float | None
    tick_ts: int  # the triggering event's time (ms)
    fired_ms: int  # when we evaluated it


class CrossIndex:
    """Rules of one series sorted by level; `crossed` slices out those a move passes."""

    __slots__ = ("_down_levels", "_down_rules", "_up_levels", "_up_rules")

    def __init__(self, rules: list[tuple[float, Rule]]) -> None:
        up = sorted((r for r in rules if r[1].direction == ABOVE), key=lambda r: r[0])
        down = sorted((r for r in rules if r[1].direction != ABOVE), key=lambda r: r[0])
        self._up_levels = [level for level, _ in up]
        self._up_rules = [rule for _, rule in up]
        self._down_levels = [level for level, _ in down]
        self._down_rules = [rule for _, rule in down]

    def __len__(self) -> int:
        return len(self._up_rules) + len(self._down_rules)

    def crossed(self, previous: float, current: float) -> list[Rule]:
        if current > previous:  # levels in (previous, current]
            levels = self._up_levels
            return self._up_rules[bisect_right(levels, previous) : bisect_right(levels, current)]
        if current < previous:  # levels in [current, previous)
            levels = self._down_levels
            return self._down_rules[bisect_left(levels, current) : bisect_left(levels, previous)]
        return []


class SecondPrices:
    """The last price of each second over the past `capacity` seconds, carried forward
    through quiet seconds, in a ring: the price `n` seconds ago is one index away."""

    __slots__ = ("_buf", "_capacity", "first", "last")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._buf: list[float] = [0.0] * capacity
        self.first = 0  # read only once `last` is set
        self.last: int | None = None

    def add(self, ts_ms: int, price: float) -> None:
        second = ts_ms // 1000
        if self.last is None:
            self.first = self.last = second
        elif second < self.last:
            return  # repaired history: the series has moved past it
        elif second > self.last:
            carried = self._buf[self.last % self._capacity]
            for s in range(max(self.last + 1, second - self._capacity + 1), second):
                self._buf[s % self._capacity] = carried
            self.last = second
            self.first = max(self.first, second - self._capacity + 1)
        self._buf[second % self._capacity] = price

    def at(self, second: int) -> float | None:
        if self.last is None or not (self.first <= second <= self.last):
            return None
        return self._buf[second % self._capacity]


@dataclass(slots=True)
class _Series:
    """One instrument's indexes (rebuilt on refresh) and values (kept across refreshes)."""

    price: CrossIndex | None = None
    ofi: CrossIndex | None = None
    vpin: CrossIndex | None = None
    windows: dict[int, CrossIndex] = field(default_factory=dict)
    last_price: float | None = None
    last_ts: int = 0
    last_ofi: float | None = None
    last_vpin: float | None = None
    last_move: dict[int, float] = field(default_factory=dict)
    seconds: SecondPrices | None = None


@dataclass(slots=True)
class _Venue:
    rules: list[Rule] = field(default_factory=list)
    down_since: int | None = None


class Evaluator:
    def __init__(self) -> None:
        self._series: dict[tuple[str, str], _Series] = {}
        self._venues: dict[str, _Venue] = {}
        self._rules: dict[int, Rule] = {}

    @property
    def rule_count(self) -> int:
        return len(self._rules)

    def rules_set(self, rules: list[Rule]) -> None:
        """Replace the active rules; a rule kept keeps its cooldown and arming."""
        by_series: dict[tuple[str, str], dict[str, list[tuple[float, Rule]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        venues: dict[str, list[Rule]] = defaultdict(list)
        for rule in rules:
            old = self._rules.get(rule.id)
            if old is not None:
                rule.carry_state(old)
            if rule.kind == FEED_DOWN:
                venues[rule.exchange].append(rule)
                continue
            level = rule.threshold
            if rule.kind == PERCENT_MOVE and rule.direction == BELOW:
                level = -abs(level)  # a fall of X % is a move through -X
            group = rule.kind
            if rule.kind == PERCENT_MOVE:
                group = f"{PERCENT_MOVE}:{rule.window_seconds}"
            by_series[(rule.exchange, rule.symbol)][group].append((level, rule))
        self._rules = {rule.id: rule for rule in rules}
        for key, series in self._series.items():
            if key not in by_series:
                series.price = series.ofi = series.vpin = None
                series.windows = {}
        for key, groups in by_series.items():
            series = self._series.setdefault(key, _Series())
            series.price = CrossIndex(groups[PRICE]) if PRICE in groups else None
            series.ofi = CrossIndex(groups[OFI]) if OFI in groups else None
            series.vpin = CrossIndex(groups[VPIN]) if VPIN in groups else None
            series.windows = {
                int(k.partition(":")[2]): CrossIndex(v)
                for k, v in groups.items()
                if k.startswith(PERCENT_MOVE)
            }
            if series.windows and series.seconds is None:
                series.seconds = SecondPrices(MAX_WINDOW_SECONDS + 1)
        for exchange, venue in self._venues.items():
            venue.rules = venues.pop(exchange, [])
        for exchange, venue_rules in venues.items():
            self._venues[exchange] = _Venue(rules=venue_rules)

    # --- events ---------------------------------------------------------------------------

    def trades(
        self, exchange: str, symbol: str, trades: Sequence[Mapping[str, Any]], now_ms: int
    ) -> list[Firing]:
        """Trades in the public shape (``price``, ``ts``), oldest first."""
        series = self._series.get((exchange, symbol))
        if series is None:
            series = self._series[(exchange, symbol)] = _Series()
        fired: list[Firing] = []
        index, windows, seconds = series.price, series.windows, series.seconds
        for trade in trades:
            price, ts = trade["price"], trade["ts"]
            if ts < series.last_ts:
                continue  # repaired history: stored, but the series has moved past it
            previous = series.last_price
            series.last_price, series.last_ts = price, ts
            if seconds is not None:
                seconds.add(ts, price)
            if previous is not None and index is not None and price != previous:
                for rule in index.crossed(previous, price):
                    self._fire(rule, price, previous, ts, now_ms, fired)
            if windows:
                self._moves(series, windows, price, ts, now_ms, fired)
        return fired

    def _moves(
        self,
        series: _Series,
        windows: dict[int, CrossIndex],
        price: float,
        ts: int,
        now_ms: int,
        fired: list[Firing],
    ) -> None:
        if series.seconds is None:
            return  # rules_set gives every series with move windows its seconds
        second = ts // 1000
        for window, index in windows.items():
            reference = series.seconds.at(second - window)
            if not reference:
                continue  # not `window` seconds of history yet (after a start)
            move = (price / reference - 1.0) * 100.0
            previous = series.last_move.get(window)
            series.last_move[window] = move
            if previous is not None and move != previous:
                for rule in index.crossed(previous, move):
                    self._fire(rule, move, previous, ts, now_ms, fired)

    def metric(
        self,
        kind: str,
        exchange: str,
        symbol: str,
        records: Sequence[Mapping[str, Any]],
        now_ms: int,
    ) -> list[Firing]:
        """OFI intervals (``ofi``) or VPIN buckets (``vpin``) as published."""
        series = self._series.get((exchange, symbol))
        if series is None:
            series = self._series[(exchange, symbol)] = _Series()
        index = series.ofi if kind == OFI else series.vpin
        attr = "last_ofi" if kind == OFI else "last_vpin"
        fired: list[Firing] = []
        for record in records:
            value = record.get(kind)
            if value is None:
                continue  # VPIN before its window is full
            previous = getattr(series, attr)
            setattr(series, attr, value)
            if previous is not None and index is not None and value != previous:
                for rule in index.crossed(previous, value):
                    self._fire(rule, value, previous, record.get("ts", now_ms), now_ms, fired)
        return fired

    def status(self, summary: Mapping[str, Any]) -> None:
        """A feed status report (marketdata.feeds.status): remember when a venue went down."""
        venue = self._venues.setdefault(summary["exchange"], _Venue())
        if summary.get("connected"):
            venue.down_since = None
            for rule in venue.rules:
                rule.armed = True
        elif venue.down_since is None:
            venue.down_since = summary.get("ts") or 0

    def feeds_check(self, now_ms: int) -> list[Firing]:
        """Fire feed_down rules whose venue has been down for their window; about once a
        second is plenty."""
        fired: list[Firing] = []
        for venue in self._venues.values():
            if venue.down_since is None:
                continue
            down_seconds = (now_ms - venue.down_since) / 1000
            for rule in venue.rules:
                if (
                    rule.armed
                    and down_seconds >= rule.window_seconds
                    and self._fire(rule, down_seconds, None, now_ms, now_ms, fired)
                ):
                    rule.armed = False
        return fired

    @staticmethod
    def _fire(
        rule: Rule, value: float, previous: float | None, ts: int, now_ms: int, out: list[Firing]
    ) -> bool:
        if rule.last_fired_ms and now_ms - rule.last_fired_ms < rule.cooldown_ms:
            return False
        rule.last_fired_ms = now_ms
        out.append(Firing(rule, value, previous, ts, now_ms))
        return True
