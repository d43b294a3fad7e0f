"""Trade ingest throughput: the feed runner's normalise-and-store path vs a raw COPY.

    DATABASE_URL=postgres://... REDIS_URL=redis://... python bench/ingest.py \
        [--trades 200000] [--rounds 7] [--max-seconds 120]

A throwaway database `qs_bench_ingest_<pid>` is created on the DATABASE_URL server, migrated and
dropped at the end (also on SIGTERM). Both sides write the same rows into the real trades
table (unique constraint, btree and BRIN indexes, deferred foreign key):

- ours: exchange-shaped (ccxt) dicts in websocket-sized batches through the ccxt client's
  normalisation, the trade writer's batching and `trades_ingest` (COPY into a session temp
  table, then INSERT ... ON CONFLICT DO NOTHING, one transaction per writer batch);
- raw COPY: finished rows COPYed straight into the table in one statement.

Machine load drifts, so the two are measured alternately: every round generates a fresh
tape and measures both sides on it, the side that goes first alternating between rounds
(ours/copy, copy/ours, ...). Before each measurement the trades table is truncated (new
heap and indexes) and a CHECKPOINT writes out the previous side's dirty pages, so neither
side inherits cache, index or WAL state from the other. A round's ratio compares two
adjacent measurements; the verdict uses the median ratio over the rounds (target >= 0.5).
An untimed warm-up round first opens the connections, creates the session's stage table
and checks that both sides store identical rows and that a replayed batch adds nothing.
Rounds stop early once the next one would end after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import throwaway_db  # noqa: E402  (needs ROOT on the path)

TARGET = 0.5
STREAM_BATCH = 500  # trades per websocket message handed to the writer, as streams do
WARMUP_TRADES = 5_000
SIDES = ("ours", "copy")
BUSY_OTHERS = 0.25  # cores used by other work during a measurement worth a warning


# --- the throwaway database ------------------------------------------------------------------
DB_PREFIX = "qs_bench_ingest_"


def database_create(url: str) -> str:
    return throwaway_db.database_create(url, prefix=DB_PREFIX)


def database_drop(url: str) -> None:
    throwaway_db.database_drop(url, prefix=DB_PREFIX)


def instrument_create(symbol: str):
    from marketdata.models import Exchange, Instrument

    exchange, _ = Exchange.objects.get_or_create(id="bench", defaults={"name": "Bench"})
    base, quote = symbol.split("/")
    return Instrument.objects.create(
        exchange=exchange,
        ccxt_symbol=symbol,
        symbol=f"{base}-{quote}",
        base=base,
        quote=quote,
        price_precision=Decimal("0.01"),
        size_precision=Decimal("0.0001"),
        active=False,  # never streamed by a runner
    )


def ccxt_trades(n: int, *, seed: int, first_id: int, start: int) -> list[dict]:
    """A random-walk tape of `n` trades in the shape ccxt hands them over."""
    rng = random.Random(seed)
    price = 64000.0
    out = []
    for i in range(n):
        price *= 1 + rng.gauss(0, 0.0002)
        out.append(
            {
                "id": str(first_id + i),
                "timestamp": start + i * 3,
                "price": round(price, 2),
                "amount": round(rng.uniform(0.0001, 1), 4),
                "side": "buy" if rng.random() < 0.5 else "sell",
            }
        )
    return out


# --- the two sides -----------------------------------------------------------------------------
class Interrupted(Exception):
    """A measurement could not finish (the database went away under it)."""


async def ours(raw: list[dict], instrument, *, replay: int = 0) -> float:
    """Seconds to normalise and store `raw` (then, untimed, replay its first `replay`)."""
    from marketdata.feeds.ccxt_client import CcxtFeedClient
    from marketdata.feeds.config import ExchangeConfig
    from marketdata.feeds.writer import TradeWriter
    from quantsaas.timeutil import now_ms

    client = CcxtFeedClient.__new__(CcxtFeedClient)  # normalisation only: no connection
    client.exchange = "bench"
    client.config = ExchangeConfig(id="bench")
    symbol = instrument.ccxt_symbol
    writer = TradeWriter(instruments={("bench", symbol): instrument})
    started = time.perf_counter()
    received = now_ms()
    for i in range(0, len(raw), STREAM_BATCH):
        writer.add(client._trades(symbol, raw[i : i + STREAM_BATCH], received))
    await writer.flush()
    elapsed = time.perf_counter() - started
    if writer.stored != len(raw):  # the writer logged why and kept the rest for a retry
        raise Interrupted(f"the trade writer stored {writer.stored} of {len(raw)} trades")
    if replay:  # a reconnect's replay: nothing new may be stored
        writer.add(client._trades(symbol, raw[:replay], now_ms()))
        assert await writer.flush() == 0
    return elapsed


def raw_copy(raw: list[dict], instrument) -> float:
    """Seconds to COPY finished rows straight into the trades table (one statement)."""
    from django.db import connection

    from quantsaas.timeutil import ms_to_dt, now_ms

    received = ms_to_dt(now_ms())
    started = time.perf_counter()
    with (
        connection.cursor() as cursor,
        cursor.copy(
            "COPY marketdata_trade (instrument_id, trade_id, ts, received_ts, price, size, side) "
            "FROM STDIN"
        ) as copy,
    ):
        for t in raw:
            copy.write_row(
                (
                    instrument.pk,
                    t["id"],
                    ms_to_dt(t["timestamp"]),
                    received,
                    t["price"],
                    t["amount"],
                    t["side"],
                )
            )
    return time.perf_counter() - started


# --- driver ------------------------------------------------------------------------------------
class Cpu:
    """Cores busy while one side runs: the bench's own (this process and, when the server
    is on this machine, the two backends serving it) and everything else's. Linux only:
    elsewhere the columns stay empty."""

    TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, backend_pids: list[int]) -> None:
        self.pids = [pid for pid in backend_pids if self._comm(pid) == "postgres"]

    @staticmethod
    def _comm(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return ""

    def sample(self) -> tuple[float, float] | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
            ours = time.process_time()
            for pid in self.pids:  # utime and stime: fields 14 and 15, after the "(comm)"
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ours += (int(stat[11]) + int(stat[12])) / self.TICK
        except (OSError, ValueError, IndexError):
            return None
        busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
        return busy / self.TICK, ours

    @staticmethod
    def cores(start, end, wall: float) -> tuple[float, float] | None:
        """(bench cores, other cores) between two samples."""
        if start is None or end is None:
            return None
        machine, bench = (end[0] - start[0]) / wall, (end[1] - start[1]) / wall
        return bench, max(0.0, machine - bench)


def backend_pids() -> list[int]:
    """The server processes of this thread's connection and of the writer's thread."""
    from asgiref.sync import sync_to_async
    from django.db import connection

    def pid() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]

    return [pid(), asyncio.run(sync_to_async(pid)())]


class Table:
    """Resets the trades table between measurements (untimed)."""

    def __init__(self) -> None:
        self.checkpoint = True

    def reset(self) -> None:
        from django.db import connection
        from django.db.utils import DatabaseError

        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE marketdata_trade")
            if self.checkpoint:
                try:
                    cursor.execute("CHECKPOINT")
                except DatabaseError as exc:  # needs superuser or pg_checkpoint
                    self.checkpoint = False
                    print(f"(no CHECKPOINT between measurements: {exc})".strip())

    def count(self, instrument) -> int:
        from marketdata.models import Trade

        return Trade.objects.filter(instrument=instrument).count()


def measure(side: str, raw: list[dict], instrument, table: Table, cpu: Cpu) -> dict:
    """Trades per second of one side on a freshly truncated table, and the cores used."""
    table.reset()
    before = cpu.sample()
    elapsed = asyncio.run(ours(raw, instrument)) if side == "ours" else raw_copy(raw, instrument)
    cores = Cpu.cores(before, cpu.sample(), elapsed)
    stored = table.count(instrument)
    assert stored == len(raw), (side, stored, len(raw))
    return {"rate": len(raw) / elapsed, "cores": cores}


def warm_up(table: Table, ours_instr, copy_instr, now: int) -> None:
    """Open both connections and the stage table; check both sides store the same rows."""
    from marketdata.models import Trade

    raw = ccxt_trades(WARMUP_TRADES, seed=0, first_id=1, start=now - 3 * WARMUP_TRADES)
    table.reset()
    asyncio.run(ours(raw, ours_instr, replay=STREAM_BATCH))
    raw_copy(raw, copy_instr)
    fields = ("trade_id", "ts", "price", "size", "side")
    stored = {
        instrument: list(
            Trade.objects.filter(instrument=instrument).order_by("trade_id").values_list(*fields)
        )
        for instrument in (ours_instr, copy_instr)
    }
    assert len(stored[ours_instr]) == WARMUP_TRADES, len(stored[ours_instr])
    assert stored[ours_instr] == stored[copy_instr], "ours and raw COPY stored different rows"


def run(args: argparse.Namespace) -> list[dict]:
    import django
    from django.core.management import call_command
    from django.db import OperationalError, connection

    django.setup()
    from quantsaas.timeutil import now_ms

    call_command("migrate", verbosity=0, interactive=False)
    # Autovacuum waking on the table in the middle of a measurement is noise, not ingest cost.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE marketdata_trade SET (autovacuum_enabled = false)")
    ours_instr, copy_instr = instrument_create("BTC/USD"), instrument_create("ETH/USD")
    table = Table()
    warm_up(table, ours_instr, copy_instr, now_ms())
    cpu = Cpu(backend_pids())

    rounds: list[dict] = []
    started = time.monotonic()
    longest = 0.0
    for number in range(1, args.rounds + 1):
        if rounds and time.monotonic() - started + longest > args.max_seconds:
            print(
                f"(stopped after {len(rounds)} of {args.rounds} rounds: "
                f"--max-seconds {args.max_seconds:.0f})"
            )
            break
        round_started = time.monotonic()
        raw = ccxt_trades(
            args.trades,
            seed=number,
            first_id=10_000_000 + number * args.trades,
            start=now_ms() - 3 * args.trades,
        )
        order = SIDES if number % 2 else SIDES[::-1]
        try:
            sides = {side: measure(side, raw, ours_instr, table, cpu) for side in order}
        except (Interrupted, OperationalError) as exc:
            # On a shared server another session may drop or terminate us; keep what we have.
            print(f"(round {number} interrupted: {str(exc).strip()})")
            if not rounds:
                raise
            return rounds
        rounds.append({"round": number, "first": order[0], **sides})
        print_round(rounds[-1], header=len(rounds) == 1)
        longest = max(longest, time.monotonic() - round_started)
    return rounds


def print_round(r: dict, *, header: bool) -> None:
    if header:
        print(
            f"{'round':>5}  {'first':5}  {'raw COPY/s':>11}  {'ours/s':>9}  {'ratio':>5}  "
            f"{'bench cores':>11}  {'other cores':>11}"
        )
    cores = ""
    if r["copy"]["cores"] and r["ours"]["cores"]:
        (copy_bench, copy_others), (ours_bench, ours_others) = (
            r["copy"]["cores"],
            r["ours"]["cores"],
        )
        cores = f"{copy_bench:4.1f} /{ours_bench:4.1f}  {copy_others:5.1f} /{ours_others:4.1f}"
    rate_copy, rate_ours = r["copy"]["rate"], r["ours"]["rate"]
    print(
        f"{r['round']:>5}  {r['first']:5}  {rate_copy:11,.0f}  {rate_ours:9,.0f}  "
        f"{rate_ours / rate_copy:5.2f}  {cores}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=200_000, help="per side and round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--max-seconds", type=float, default=120.0, help="no round starts that would end later"
    )
    args = parser.parse_args()
    url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not (url.startswith("postgres") and redis_url):
        sys.exit("bench/ingest.py needs PostgreSQL and Redis: set DATABASE_URL and REDIS_URL.")

    # A SIGTERM (a CI timeout) still drops the database below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    bench_url = database_create(url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantsaas.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    # One connection per thread, held for the run (as in the feed process); no pool
    # maintenance threads touching the server while we measure.
    os.environ.update(DATABASE_URL=bench_url, DB_POOL="false", LOG_LEVEL="WARNING")
    print(
        f"trade ingest: {args.trades:,} trades per side and round, up to {args.rounds} rounds, "
        f"fresh table per measurement, {os.cpu_count()} CPUs"
    )
    try:
        rounds = run(args)
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        database_drop(bench_url)

    ratios = [r["ours"]["rate"] / r["copy"]["rate"] for r in rounds]
    ratio = statistics.median(ratios)
    copy_rate = statistics.median(r["copy"]["rate"] for r in rounds)
    ours_rate = statistics.median(r["ours"]["rate"] for r in rounds)
    print(f"{'median':>5}  {'':5}  {copy_rate:11,.0f}  {ours_rate:9,.0f}  {ratio:5.2f}")
    print(
        "cores: CPU cores busy during the raw COPY / ours measurement, by the bench (this "
        "process and its\ndatabase backends) and by everything else on the machine."
    )
    loaded = [
        r["round"]
        for r in rounds
        if any(r[side]["cores"] and r[side]["cores"][1] >= BUSY_OTHERS for side in SIDES)
    ]
    if loaded:
        # The raw COPY overlaps its client and the server on two cores, ours mostly runs on
        # one at a time: other work slows the baseline more and pushes the ratio up.
        print(
            f"other work used >= {BUSY_OTHERS} cores in round(s) {', '.join(map(str, loaded))}; "
            "during the raw COPY it pushes the ratio up\n(the COPY uses more cores than ours)."
        )
        quiet = [x for r, x in zip(rounds, ratios, strict=True) if r["round"] not in loaded]
        if quiet:
            print(
                f"median ratio of the {len(quiet)} quiet round(s): {statistics.median(quiet):.2f}"
            )
    print(
        f"ratio ours/raw COPY, median of {len(rounds)} rounds: {ratio:.2f} "
        f"(rounds {min(ratios):.2f}-{max(ratios):.2f}; target >= {TARGET})  "
        f"{'OK' if ratio >= TARGET else 'BELOW TARGET'}"
    )


if __name__ == "__main__":
    main()
