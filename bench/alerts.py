"""Issue 15's alert evaluation cost per tick, against the feed runner's own per-tick cost.

    .venv/bin/python bench/alerts.py [--rules 10000] [--ticks 100000] [--rounds 5]

One symbol, a random-walk tape at 1,000 trades a second (1 ms apart), and:

- baseline: what the runner does per trade without alerts: build the public payload and
  ``Publisher.publish`` it (one loop turn per trade, so the Publisher's flush runs as in
  the runner), into the in-process store (``LocalStore``), no network;
- with alerts: the same through ``LiveAlerts.tap`` with `--rules` enabled rules on that
  symbol: a quarter price "above", a quarter price "below" (levels within ±2 % of the
  start), a quarter percent moves over 60 s to 1 h, and the rest OFI and VPIN thresholds
  (loaded, not touched by trades). Firings are published to the alerts channel as in the
  runner; storing them (a database thread) is not timed;
- the evaluator alone, and a naive loop over every rule per tick for reference.

Each round times baseline and alerts back to back, in alternating order; figures are the
medians. No database,
no Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantsaas.settings")
os.environ.setdefault("DEBUG", "1")
os.environ["REDIS_URL"] = ""  # the in-process store: the bench times our code, not Redis
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from alerts.evaluator import Evaluator, Rule  # noqa: E402
from alerts.live import LiveAlerts  # noqa: E402
from marketdata.feeds.publish import Publisher, trade_payload  # noqa: E402
from marketdata.records import TradeRecord  # noqa: E402
from marketdata.streaming.store import LocalStore  # noqa: E402

START_MS = 1_764_000_000_000
PRICE = 64_000.0


def tape(n: int, seed: int = 1) -> list[TradeRecord]:
    rng = random.Random(seed)
    price, out = PRICE, []
    for i in range(n):
        price = round(price * (1 + rng.gauss(0, 0.0002)), 2)
        out.append(
            TradeRecord(
                exchange="sim",
                symbol="BTC/USD",
                trade_id=str(i),
                ts=START_MS + i,
                price=price,
                size=0.01,
                side="buy" if i % 2 else "sell",
            )
        )
    return out


def rules(n: int, seed: int = 2) -> list[Rule]:
    rng = random.Random(seed)
    out = []
    windows = (60, 300, 900, 3600)
    for i in range(n):
        group = i % 4
        common = {
            "id": i + 1,
            "organization_id": 1 + i % 50,
            "exchange": "sim",
            "symbol": "BTC/USD",
        }
        if group < 2:
            level = round(PRICE * (1 + rng.uniform(-0.02, 0.02)), 2)
            direction = "above" if group == 0 else "below"
            out.append(Rule(kind="price", direction=direction, threshold=level, **common))
        elif group == 2:
            direction = rng.choice(("above", "below"))
            window = windows[i // 4 % len(windows)]
            threshold = rng.uniform(0.1, 3.0)
            out.append(
                Rule(
                    kind="percent_move",
                    direction=direction,
                    threshold=threshold,
                    window_seconds=window,
                    **common,
                )
            )
        else:
            kind = rng.choice(("ofi", "vpin"))
            out.append(Rule(kind=kind, direction="above", threshold=rng.uniform(0, 1), **common))
    for rule in out:
        rule.cooldown_ms = 60_000
    return out


async def run_feed(trades: list[TradeRecord], *, alert_rules: list[Rule] | None) -> tuple:
    """Seconds per trade through the publish path, and firings."""
    publisher = Publisher(store=LocalStore(seconds=300, maxlen=10_000_000))
    live = None
    if alert_rules is not None:
        live = LiveAlerts(instruments=[])
        live.evaluator.rules_set(alert_rules)
        publisher = live.tap(publisher)
    start = time.perf_counter()
    for trade in trades:
        await publisher.publish("trades", "sim", "BTC/USD", [trade_payload(trade)])
        await asyncio.sleep(0)  # one loop turn per trade, as messages arrive in the runner
    await publisher.flush()
    elapsed = time.perf_counter() - start
    fired = live.fired if live else 0
    if live is not None:
        live._executor.shutdown(wait=False)
    return elapsed / len(trades), fired


def evaluator_only(trades: list[TradeRecord], alert_rules: list[Rule]) -> float:
    evaluator = Evaluator()
    evaluator.rules_set(alert_rules)
    payloads = [[trade_payload(t)] for t in trades]
    start = time.perf_counter()
    for payload in payloads:
        evaluator.trades("sim", "BTC/USD", payload, payload[0]["ts"])
    return (time.perf_counter() - start) / len(trades)


def naive(trades: list[TradeRecord], alert_rules: list[Rule], limit: int = 2_000) -> float:
    """The loop this design avoids: every price rule checked on every tick."""
    price_rules = [(r.threshold, r.direction == "above") for r in alert_rules if r.kind == "price"]
    fired = 0
    start = time.perf_counter()
    previous = trades[0].price
    for trade in trades[1:limit]:
        price = trade.price
        for level, above in price_rules:
            if (above and previous < level <= price) or (not above and previous > level >= price):
                fired += 1
        previous = price
    return (time.perf_counter() - start) / (limit - 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trades = tape(args.ticks)
    alert_rules = rules(args.rules)
    base, with_alerts, alone, fired = [], [], [], 0
    asyncio.run(run_feed(trades[:5_000], alert_rules=None))  # warm up
    for round_ in range(args.rounds):
        for side in (0, 1) if round_ % 2 == 0 else (1, 0):  # alternate who goes first
            if side == 0:
                base.append(asyncio.run(run_feed(trades, alert_rules=None))[0])
            else:
                per_tick, fired = asyncio.run(run_feed(trades, alert_rules=rules(args.rules)))
                with_alerts.append(per_tick)
        alone.append(evaluator_only(trades, rules(args.rules)))
    naive_tick = naive(trades, alert_rules)
    b, a, e = (statistics.median(x) * 1e6 for x in (base, with_alerts, alone))
    print(f"{args.rules:,} active rules on one symbol, {args.ticks:,} trades, {args.rounds} rounds")
    print(f"  baseline (publish path, no rules): {b:8.2f} us/tick")
    print(f"  with alerts:                       {a:8.2f} us/tick  ({a / b:.2f}x baseline)")
    print(f"  alert cost per tick:               {a - b:8.2f} us  (evaluator alone {e:.2f} us)")
    print(f"  firings in a run:                  {fired:,} (cooldown 60 s)")
    print(f"  naive loop over the price rules:   {naive_tick * 1e6:8.2f} us/tick, for reference")
    print(f"  ticks/s one core sustains with alerts: {1e6 / a:,.0f} (target 1,000)")


if __name__ == "__main__":
    main()
