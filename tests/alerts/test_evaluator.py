"""The in-memory evaluator: crossings fire once, re-arm, respect cooldowns."""

from __future__ import annotations

from alerts.evaluator import Evaluator, Rule

NOW = 1_764_000_000_000


def rule(rule_id: int = 1, **fields) -> Rule:
    defaults = {
        "organization_id": 7,
        "kind": "price",
        "exchange": "sim",
        "symbol": "BTC/USD",
        "direction": "above",
        "threshold": 100.0,
    }
    return Rule(id=rule_id, **{**defaults, **fields})


def ticks(evaluator: Evaluator, prices: list[float], *, start_ms: int = NOW, step_ms: int = 1):
    """Feed one trade per price; returns the fired (rule id, price) pairs."""
    fired = []
    for i, price in enumerate(prices):
        ts = start_ms + i * step_ms
        for firing in evaluator.trades("sim", "BTC/USD", [{"price": price, "ts": ts}], ts):
            fired.append((firing.rule.id, firing.value))
    return fired


def test_a_rise_through_the_level_fires_once_and_staying_above_does_not_fire_again():
    evaluator = Evaluator()
    evaluator.rules_set([rule()])

    assert ticks(evaluator, [99, 99.5, 100.5, 101, 102, 100.1]) == [(1, 100.5)]


def test_the_rule_re_arms_when_the_price_goes_back_below():
    evaluator = Evaluator()
    evaluator.rules_set([rule()])

    assert ticks(evaluator, [99, 101, 99, 101]) == [(1, 101), (1, 101)]


def test_below_fires_on_a_fall_through_the_level_only():
    evaluator = Evaluator()
    evaluator.rules_set([rule(direction="below")])

    assert ticks(evaluator, [101, 102, 99.9, 98, 101, 100]) == [(1, 99.9), (1, 100)]


def test_the_first_price_is_a_baseline_not_a_crossing():
    evaluator = Evaluator()
    evaluator.rules_set([rule(threshold=50)])

    assert ticks(evaluator, [100, 101]) == []


def test_a_crossing_within_the_cooldown_is_not_reported():
    evaluator = Evaluator()
    evaluator.rules_set([rule(cooldown_ms=1_000)])

    fired = ticks(evaluator, [99, 101, 99, 101, 99, 101], step_ms=300)

    # crossings at 300 ms, 900 ms (within 1 s: dropped) and 1500 ms
    assert fired == [(1, 101), (1, 101)]


def test_one_jump_fires_every_level_it_passes_and_no_other():
    evaluator = Evaluator()
    evaluator.rules_set([rule(i, threshold=float(level)) for i, level in enumerate(range(90, 111))])

    fired = ticks(evaluator, [95.5, 104.5])

    assert sorted(rule_id for rule_id, _ in fired) == list(range(6, 15))  # levels 96..104


def test_ten_thousand_rules_are_sliced_not_scanned():
    evaluator = Evaluator()
    evaluator.rules_set([rule(i, threshold=1000 + i * 0.01) for i in range(10_000)])

    fired = ticks(evaluator, [1000.005, 1000.025])

    assert [rule_id for rule_id, _ in fired] == [1, 2]


def test_repaired_trades_older_than_the_last_are_ignored():
    evaluator = Evaluator()
    evaluator.rules_set([rule()])
    ticks(evaluator, [99], start_ms=NOW)

    old = evaluator.trades("sim", "BTC/USD", [{"price": 101, "ts": NOW - 5}], NOW)

    assert old == []


def test_a_reload_keeps_a_rules_cooldown():
    evaluator = Evaluator()
    evaluator.rules_set([rule(cooldown_ms=60_000)])
    assert ticks(evaluator, [99, 101]) == [(1, 101)]

    evaluator.rules_set([rule(cooldown_ms=60_000)])  # the periodic reload: new objects

    assert ticks(evaluator, [99, 101], start_ms=NOW + 10) == []


def test_a_disabled_or_deleted_rule_stops_firing_at_the_next_reload():
    evaluator = Evaluator()
    evaluator.rules_set([rule()])
    evaluator.rules_set([])

    assert ticks(evaluator, [99, 101]) == []


def test_percent_move_compares_with_the_price_window_seconds_earlier():
    evaluator = Evaluator()
    evaluator.rules_set(
        [
            rule(1, kind="percent_move", threshold=2.0, window_seconds=10),
            rule(2, kind="percent_move", direction="below", threshold=2.0, window_seconds=10),
        ]
    )
    base = NOW - NOW % 1000
    # flat at 100 for 12 s, then 101 (1 %), then 102.5 (2.5 %): the rise fires once
    prices = [100.0] * 12 + [101.0, 102.5, 102.6]
    fired = ticks(evaluator, prices, start_ms=base, step_ms=1000)
    assert [(r, round(v, 2)) for r, v in fired] == [(1, 2.5)]

    # back to 100 against a reference of ~100-102: then a fall of 3 % from 102.6
    later = ticks(evaluator, [102.6] * 11 + [99.4], start_ms=base + 15_000, step_ms=1000)
    assert [r for r, _ in later] == [2]


def test_percent_move_needs_a_full_window_of_history_first():
    evaluator = Evaluator()
    evaluator.rules_set([rule(kind="percent_move", threshold=1.0, window_seconds=60)])

    assert ticks(evaluator, [100, 110, 120], step_ms=1000) == []


def test_ofi_and_vpin_thresholds_fire_on_crossings_of_their_series():
    evaluator = Evaluator()
    evaluator.rules_set(
        [
            rule(1, kind="ofi", threshold=5.0),
            rule(2, kind="vpin", threshold=0.4, direction="above"),
        ]
    )
    ofi = [{"ts": NOW + i, "ofi": v} for i, v in enumerate([1.0, 6.0, 7.0, -2.0, 5.0])]
    vpin = [{"ts": NOW, "vpin": None}, {"ts": NOW + 1, "vpin": 0.3}, {"ts": NOW + 2, "vpin": 0.5}]

    fired_ofi = evaluator.metric("ofi", "sim", "BTC/USD", ofi, NOW)
    fired_vpin = evaluator.metric("vpin", "sim", "BTC/USD", vpin, NOW)

    assert [(f.rule.id, f.value, f.tick_ts) for f in fired_ofi] == [
        (1, 6.0, NOW + 1),
        (1, 5.0, NOW + 4),
    ]
    assert [(f.rule.id, f.value) for f in fired_vpin] == [(2, 0.5)]


def test_feed_down_fires_once_per_outage_after_its_grace():
    evaluator = Evaluator()
    evaluator.rules_set([rule(kind="feed_down", symbol="", window_seconds=30)])
    evaluator.status({"exchange": "sim", "connected": True, "ts": NOW})
    evaluator.status({"exchange": "sim", "connected": False, "ts": NOW + 1_000})

    assert evaluator.feeds_check(NOW + 20_000) == []  # down 19 s: within the grace
    first = evaluator.feeds_check(NOW + 31_000)
    assert [f.rule.id for f in first] == [1]
    evaluator.status({"exchange": "sim", "connected": False, "ts": NOW + 40_000})
    assert evaluator.feeds_check(NOW + 60_000) == []  # the same outage

    evaluator.status({"exchange": "sim", "connected": True, "ts": NOW + 61_000})
    evaluator.status({"exchange": "sim", "connected": False, "ts": NOW + 62_000})
    assert [f.rule.id for f in evaluator.feeds_check(NOW + 93_000)] == [1]


def test_rules_only_hear_their_own_instrument():
    evaluator = Evaluator()
    evaluator.rules_set([rule(symbol="ETH/USD")])

    assert ticks(evaluator, [99, 101]) == []
