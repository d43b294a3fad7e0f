"""Stream fan-out at three loads in one run: ours beside a bare `websockets` server.

    DATABASE_URL=postgres://... REDIS_URL=redis://... python bench/fanout.py \
        [--seconds 10] [--web-procs 2] [--client-procs 2] [--only low,high,two] \
        [--low-clients 50] [--low-rate 100] [--clients 500] [--rate 1000] [--two-clients 1000]

Runs on 127.0.0.1 only, each side for a bounded time, then stops itself. The feed
side of ours is the real ``Publisher`` appending to the per-channel Redis Stream
(Nagle-style: a message goes as soon as no append is in flight); each daphne
process's hub reads the stream with one XREAD and fans out through its Outlets.

1. low, 50 clients x 100 ticks/s, ``conflate_ms`` 0: ours (one daphne) beside a bare
   ``websockets`` server sending each tick as its own frame the moment it arrives
   (Redis pub/sub in, ``broadcast`` out). Target: ours p50 <= 5 ms, p99 <= 20 ms.
2. high, 500 clients x 1,000 ticks/s: ours, then the bare server sending *our
   framing*: one client of ours records how many ticks each frame it got carried, and
   the bare server's feed groups its ticks into frames of exactly those sizes, in
   order, so both servers write the same number of frames carrying the same ticks.
   Targets: every tick delivered or counted in ``lagged``, p99 < 150 ms, server CPU
   per delivered tick <= 1.5x the bare server's.
3. two, 1,000 clients over ``--web-procs`` daphne processes (same Redis): every tick
   delivered.

The same load generator serves every side: the connections are shared by a few
client processes (uvloop, compression off, frames read as bytes; only ``seq``,
``from_seq``, the record count and the oldest/newest ``recv_ts`` extracted). A
frame may carry several messages (``from_seq`` the oldest, ``seq`` the newest), so
the gap check is ``from_seq`` (or ``seq``) == last + 1. After the load stops, each
client reads on until it holds the last message published (or a deadline): a client
whose seq runs contiguously to that last message got every tick. Latency is client
receipt minus ``recv_ts`` (the Publisher's receive stamp, whole ms) for the oldest and
the newest record of every frame in the measured window. CPU is read from /proc for
the servers (all daphne processes together), the clients and the whole machine
(others' work on this shared machine shows there). Bench rows are deleted afterwards
(a throwaway database), and so is the bench's stream in Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import throwaway_db  # noqa: E402  (needs ROOT on the path)

DB_PREFIX = "qs_bench_fanout_"
ASGI_APP = "quantsaas.asgi:application"
CHANNEL = "trades.sim.BTC-USD"
# Pub/sub ignores the Redis db number: one name per run, so two runs never mix.
PUBSUB = os.environ.setdefault("BENCH_FANOUT_PUBSUB", f"bench:fanout:ticks:{os.getpid()}")
# Several client processes share the connections; more than the cores only adds switching.
CLIENT_PROCS = min(4, max(2, os.cpu_count() or 2))
WARMUP_SECONDS = 2.0
DRAIN_SECONDS = 10.0  # after the load: how long clients may take to get the last message
FRAMING_MAX = 500_000  # frame sizes one client records for the replay
# ctl (shared with the client processes): window start, window end (ms), give-up (s), last seq
START, END, GIVE_UP, LAST_SEQ = range(4)


def now_ms() -> float:
    return time.time() * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat: others' load shows here."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def wait_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise SystemExit(f"server on {port} did not start")


# --- clients (separate processes, so the server is what is measured) -----------------------
# The generator must cost far less per frame than the servers it measures, and the same for
# both: frames are taken as bytes (no UTF-8 decode, no JSON parse); seq, from_seq, the record
# count and the oldest and newest recv_ts are read with C-level searches in the frame. Only
# rare frames (lagged, control) are parsed. Compression is off on every side, as in
# production (daphne accepts none).
UPDATE_PREFIX = b'{"type":"update"'
RECV_TS = re.compile(rb'"recv_ts":(\d+)')
SEQ = re.compile(rb'"seq":(\d+)(?:,"from_seq":(\d+))?')
HEAD = 160  # seq and from_seq come before "data"; the channel name is short


def quiet_teardown() -> None:
    """Stopping mid-stream makes asyncio log every write to a closed socket; not a finding."""
    logging.getLogger("asyncio").setLevel(logging.ERROR)


def client_worker(url, headers, origin, count, subscribe, ctl, record, ready, results):
    quiet_teardown()
    import orjson
    import websockets

    gate = asyncio.Semaphore(20)  # connect in waves: daphne's listen backlog is small
    subscribe_op = orjson.dumps({"op": "subscribe", "channels": [CHANNEL], "conflate_ms": 0})
    stats = {
        "ticks": 0,
        "frames": 0,
        "lagged": 0,
        "gaps": 0,
        "repeats": 0,
        "latencies": array("d"),
        "framing": array("I"),
    }
    lasts = [0] * count  # each connection's newest seq: the driver's completeness check

    async def one(index: int) -> None:
        try:
            await gate.acquire()
            ws = await websockets.connect(
                url,
                additional_headers=headers,
                origin=origin,
                compression=None,
                proxy=None,
                max_size=None,
                open_timeout=60,
            )
        except Exception as exc:  # surfaced to the driver instead of hanging it
            ready.put(repr(exc))
            return
        async with ws:
            if subscribe:
                await ws.recv()  # welcome
                await ws.send(subscribe_op.decode())
                while orjson.loads(await ws.recv()).get("type") != "subscribed":
                    pass  # an update before the confirmation: before the window anyway
            gate.release()
            ready.put(1)
            recv, latencies, last = ws.recv, stats["latencies"], 0
            framing = stats["framing"] if record and index == 0 else None
            while True:
                frame = await recv(decode=False)
                received = time.time() * 1000
                if not frame.startswith(UPDATE_PREFIX):
                    message = orjson.loads(frame)
                    if message.get("type") == "lagged":
                        stats["lagged"] += message["missed"]  # skipped, and said so
                        last = lasts[index] = message["to_seq"]
                    continue
                head = SEQ.search(frame, 0, HEAD)
                seq = int(head.group(1))
                first = int(head.group(2)) if head.group(2) else seq
                if last and first != last + 1:
                    if first > last + 1:
                        stats["gaps"] += first - last - 1  # lost without a word: must stay 0
                    else:
                        stats["repeats"] += last + 1 - first
                last = lasts[index] = seq
                records = frame.count(b'"recv_ts":')
                if framing is not None and len(framing) < FRAMING_MAX:
                    framing.append(records)
                # Steady state: what arrives during the measured window, however old.
                if not ctl[START] <= received < ctl[END]:
                    continue
                stats["frames"] += 1
                stats["ticks"] += records
                # The oldest and the newest record of the frame bound every record's latency.
                latencies.append(received - int(RECV_TS.search(frame).group(1)))
                tail = frame.rfind(b'"recv_ts":')
                latencies.append(received - int(RECV_TS.match(frame, tail).group(1)))

    async def main():
        tasks = [asyncio.create_task(one(i)) for i in range(count)]
        give_up = time.monotonic() + ctl[GIVE_UP]
        while time.monotonic() < give_up:
            final = ctl[LAST_SEQ]
            if final and all(last >= final for last in lasts):
                break
            await asyncio.sleep(0.1)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        final = ctl[LAST_SEQ]
        stats["complete"] = sum(1 for last in lasts if final and last >= final)
        results.put(stats)

    try:  # the cheapest event loop there is, for every server alike
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


# --- the bare server --------------------------------------------------------------------------
def baseline_server(port: int, redis_url: str) -> None:
    """Frames in over Redis pub/sub, each broadcast as it comes: nothing but the sending."""
    import redis.asyncio as aioredis
    from websockets.asyncio.server import broadcast, serve

    quiet_teardown()
    clients: set = set()

    async def handler(ws):
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    async def main():
        client = aioredis.from_url(redis_url)
        pubsub = client.pubsub()
        await pubsub.subscribe(PUBSUB)
        async with serve(handler, "127.0.0.1", port, compression=None):
            async for message in pubsub.listen():
                if message["type"] == "message":
                    broadcast(clients, message["data"].decode())

    asyncio.run(main())


# --- load -----------------------------------------------------------------------------------
async def load_ours(rate: int, seconds: float) -> int:
    """The real Publisher appending to the store; returns the channel's last seq."""
    from marketdata.feeds.publish import Publisher

    publisher = Publisher()
    try:
        await _paced(
            rate, seconds, lambda tick: publisher.publish("trades", "sim", "BTC/USD", [tick])
        )
        await asyncio.sleep(0.2)  # the append in flight, and the one queued behind it
        await publisher.flush()
        return publisher.seq[CHANNEL]
    finally:
        await publisher.store.aclose()


async def load_bare(rate: int, seconds: float, redis_url: str, framing) -> int:
    """Ticks over Redis pub/sub to the bare server; returns the last frame's seq.

    Without `framing`, one frame per tick, sent as the tick comes. With it, the ticks
    go in frames of exactly those sizes, in that order (cycled if the run outlasts
    them): each frame leaves as soon as its last tick is there.
    """
    import orjson
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    seq, pending = 0, []
    sizes = itertools.cycle(framing) if framing else None
    want = next(sizes) if sizes else 1

    async def publish(data):
        nonlocal seq
        seq += 1
        frame = {"type": "update", "channel": CHANNEL, "seq": seq, "data": data}
        await client.publish(PUBSUB, orjson.dumps(frame))

    async def send(tick):
        nonlocal want
        tick["recv_ts"] = int(now_ms())
        pending.append(tick)
        while len(pending) >= want:
            data = pending[:want]
            del pending[:want]
            want = next(sizes) if sizes else 1
            await publish(data)

    try:
        await _paced(rate, seconds, send)
        if pending:
            await publish(pending[:])
        return seq
    finally:
        await client.aclose()


async def _paced(rate: int, seconds: float, send) -> int:
    """`rate` ticks a second in 10 ms steps (a burst per step, as a venue's feed delivers)."""
    step = 0.01
    per_step = max(1, round(rate * step))
    every = max(step, per_step / rate)
    sent, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        for _ in range(per_step):
            sent += 1
            await send(
                {
                    "id": str(sent),
                    "ts": int(now_ms()),
                    "price": 64000.0 + sent % 100,
                    "size": 0.01,
                    "side": "buy",
                }
            )
        next_at = start + (sent / per_step) * every
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return sent


# --- one side -------------------------------------------------------------------------------
def run_side(name, urls, headers, origin, subscribe, clients, rate, args, server_pids, load):
    """`clients` connections over `urls` (round robin by client process) under `load`."""
    seconds, workers = args.seconds, min(args.client_procs, clients)
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    give_up = 120 + WARMUP_SECONDS + seconds + DRAIN_SECONDS
    ctl = ctx.Array("d", [float("inf"), float("inf"), give_up, 0.0], lock=False)
    per = [clients // workers + (1 if i < clients % workers else 0) for i in range(workers)]
    procs = [
        ctx.Process(
            target=client_worker,
            args=(urls[i % len(urls)], headers, origin, n, subscribe, ctl, i == 0, ready, results),
            daemon=True,
        )
        for i, n in enumerate(per)
    ]
    for p in procs:
        p.start()
    for _ in range(clients):
        status = ready.get(timeout=120)
        if status != 1:
            raise SystemExit(f"a client failed to connect: {status}")
    ctl[START] = now_ms() + WARMUP_SECONDS * 1000
    ctl[END] = ctl[START] + seconds * 1000
    cpu = {}

    def sample(at: str) -> None:
        cpu[at] = (
            sum(cpu_seconds(pid) for pid in server_pids),
            sum(cpu_seconds(p.pid) for p in procs),
            machine_busy(),
        )

    async def drive():
        task = asyncio.ensure_future(load(WARMUP_SECONDS + seconds + 0.5))
        await asyncio.sleep(WARMUP_SECONDS)
        sample("start")
        await asyncio.sleep(seconds)
        sample("end")
        return await task

    ctl[LAST_SEQ] = asyncio.run(drive())
    stats = [results.get(timeout=give_up) for _ in procs]
    for p in procs:
        p.join(10)
    import numpy as np

    latencies = np.concatenate([np.frombuffer(s["latencies"], dtype="d") for s in stats])
    ticks = sum(s["ticks"] for s in stats)
    (server0, clients0, (busy0, total0)), (server1, clients1, (busy1, total1)) = (
        cpu["start"],
        cpu["end"],
    )
    frames = sum(s["frames"] for s in stats)
    return {
        "name": name,
        "clients": clients,
        "ticks_per_s": ticks / seconds,
        "frames_per_s": frames / seconds,
        "ticks_per_frame": ticks / max(frames, 1),
        "delivered_share": ticks / (clients * rate * seconds),
        "lagged": sum(s["lagged"] for s in stats),
        "gaps": sum(s["gaps"] for s in stats),
        "repeats": sum(s["repeats"] for s in stats),
        "complete": sum(s["complete"] for s in stats),
        "p50": float(np.percentile(latencies, 50)) if latencies.size else float("nan"),
        "p99": float(np.percentile(latencies, 99)) if latencies.size else float("nan"),
        "max": float(latencies.max()) if latencies.size else float("nan"),
        "server_cores": (server1 - server0) / seconds,
        "client_cores": (clients1 - clients0) / seconds,
        "machine_busy": (busy1 - busy0) / max(total1 - total0, 1),
        "cpu_per_million": (server1 - server0) / max(ticks, 1) * 1e6,
        # One client recorded its frames (the first of client process 0): our framing.
        "framing": max((list(s["framing"]) for s in stats), key=len),
    }


def bench_account(clients: int) -> str:
    """An organization allowed `clients` connections, in the throwaway database; its key."""
    from accounts.models import User
    from accounts.services.api_keys import api_key_create
    from accounts.services.organizations import organization_create
    from billing.models import Plan, PlanOverride

    throwaway_db.sim_btc_usd()
    user = User.objects.create_user(email=f"bench-{os.getpid()}@bench.invalid", password=None)
    org = organization_create(name="Bench fan-out", owner=user)
    plan, _ = Plan.objects.update_or_create(
        code="bench-fanout",
        defaults={
            "name": "Bench",
            "price_cents": 0,
            "requests_per_minute": 60,
            "ws_connections": clients + 10,
            "ws_subscriptions": 10,
            "stream_delay_seconds": 0,
            "api_keys": 5,
            "is_public": False,
        },
    )
    PlanOverride.objects.create(organization=org, plan=plan, reason="bench")
    return api_key_create(organization=org, created_by=user, name="bench").raw_key


def start_server(command: list[str], env: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, *command, str(port)], cwd=ROOT, env=env, start_new_session=True
    )
    wait_port(port)
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


# --- the three loads --------------------------------------------------------------------------
def run_ours(name, clients, rate, args, key, procs=1):
    servers = [
        start_server(
            ["-m", "quantsaas.web", "-b", "127.0.0.1", "-v", "0", ASGI_APP, "-p"],
            {**os.environ, "LOG_LEVEL": "WARNING"},
        )
        for _ in range(procs)
    ]
    try:
        return run_side(
            name,
            [f"ws://127.0.0.1:{port}/ws/v1/stream" for _, port in servers],
            {"Authorization": f"Bearer {key}"},
            f"http://127.0.0.1:{servers[0][1]}",
            True,
            clients,
            rate,
            args,
            [proc.pid for proc, _ in servers],
            lambda s: load_ours(rate, s),
        )
    finally:
        for proc, _ in servers:
            stop(proc)


def run_bare(name, clients, rate, args, redis_url, framing=None):
    server, port = start_server([__file__, "--baseline-server"], os.environ.copy())
    try:
        return run_side(
            name,
            [f"ws://127.0.0.1:{port}"],
            {},
            None,
            False,
            clients,
            rate,
            args,
            [server.pid],
            lambda s: load_bare(rate, s, redis_url, framing),
        )
    finally:
        stop(server)


def run_all(args, key: str, redis_url: str) -> dict[str, list[dict]]:
    loads: dict[str, list[dict]] = {}
    if "low" in args.only:
        title = f"low: {args.low_clients} clients x {args.low_rate} ticks/s, conflate_ms 0"
        loads[title] = [
            run_ours("ours (daphne)", args.low_clients, args.low_rate, args, key),
            run_bare("bare, per tick", args.low_clients, args.low_rate, args, redis_url),
        ]
    if "high" in args.only:
        title = f"high: {args.clients} clients x {args.rate} ticks/s"
        ours = run_ours("ours (daphne)", args.clients, args.rate, args, key)
        rows = [
            ours,
            run_bare(
                "bare, our framing", args.clients, args.rate, args, redis_url, ours["framing"]
            ),
        ]
        if args.bare_per_tick_high:
            rows.append(run_bare("bare, per tick", args.clients, args.rate, args, redis_url))
        loads[title] = rows
    if "two" in args.only and args.web_procs > 1:
        title = (
            f"two: {args.two_clients} clients x {args.rate} ticks/s over "
            f"{args.web_procs} daphne processes"
        )
        name = f"ours ({args.web_procs} daphne)"
        loads[title] = [run_ours(name, args.two_clients, args.rate, args, key, args.web_procs)]
    return loads


# --- the report -------------------------------------------------------------------------------
def checks_for(title: str, rows: list[dict]) -> dict[str, bool]:
    ours, others = rows[0], rows[1:]
    every = ours["gaps"] == 0 and ours["repeats"] == 0 and ours["complete"] == ours["clients"]
    if title.startswith("low"):
        checks = {
            "ours p50 <= 5 ms": ours["p50"] <= 5,
            "ours p99 <= 20 ms": ours["p99"] <= 20,
            "every tick delivered": every and not ours["lagged"],
        }
    elif title.startswith("high"):
        checks = {
            "every tick delivered or counted in lagged": every,
            "p99 < 150 ms": ours["p99"] < 150,
        }
        framed = next((r for r in others if "framing" in r["name"]), None)
        if framed is not None:
            checks["CPU per tick <= 1.5x the bare server sending our framing"] = (
                ours["cpu_per_million"] <= 1.5 * framed["cpu_per_million"]
            )
    else:
        checks = {"every tick delivered": every and not ours["lagged"]}
    return checks


def report(args, loads: dict[str, list[dict]]) -> bool:
    busy = Path("/proc/loadavg").read_text().split()[:3]
    tuning = " ".join(
        f"{k}={os.environ[k]}"
        for k in ("STREAM_FANOUT_SHARE", "STREAM_MAX_GAP_MS", "STREAM_MIN_GAP_MS")
        if k in os.environ
    )
    print(
        f"\n{args.seconds:.0f} s measured per side, {args.client_procs} client processes, "
        f"{os.cpu_count()} CPUs, load average {' '.join(busy)} at the end"
        + (f", {tuning}" if tuning else ", stream settings at their defaults")
    )
    met_all = True
    for title, rows in loads.items():
        print(f"\n{title}")
        print(
            f"{'server':22} {'ticks/s':>8} {'deliv.':>6} {'frames/s':>8} {'t/frame':>7} "
            f"{'lagged':>6} {'gaps':>4} {'compl.':>6} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'max ms':>7} {'CPU s/M':>7} {'server':>6} {'clients':>7} {'machine':>7}"
        )
        for r in rows:
            print(
                f"{r['name']:22} {r['ticks_per_s']:8.0f} {r['delivered_share']:6.1%} "
                f"{r['frames_per_s']:8.0f} {r['ticks_per_frame']:7.1f} {r['lagged']:6d} "
                f"{r['gaps'] + r['repeats']:4d} {r['complete'] / r['clients']:6.0%} "
                f"{r['p50']:7.1f} {r['p99']:7.1f} {r['max']:7.1f} {r['cpu_per_million']:7.2f} "
                f"{r['server_cores']:6.2f} {r['client_cores']:7.2f} {r['machine_busy']:7.0%}"
            )
        ours = rows[0]
        for base in rows[1:]:
            print(
                f"  ours / {base['name']}: p50 {ours['p50'] / max(base['p50'], 0.01):.2f}x, "
                f"p99 {ours['p99'] / max(base['p99'], 0.01):.2f}x, throughput "
                f"{ours['ticks_per_s'] / max(base['ticks_per_s'], 1):.2f}x, CPU per tick "
                f"{ours['cpu_per_million'] / max(base['cpu_per_million'], 1e-9):.2f}x"
            )
        for what, ok in checks_for(title, rows).items():
            met_all &= ok
            print(f"  {'met    ' if ok else 'NOT met'}  {what}")
    print(
        "\ndeliv.: ticks received in the window / ticks sent x clients; t/frame: ticks per "
        "frame;\nlagged: ticks a slow client was told it missed; gaps: messages (seq) lost "
        "or repeated without a word;\ncompl.: clients that received every message up to the "
        "last one published; CPU s/M: server CPU\nseconds per million ticks delivered; "
        "server/clients: cores used; machine: share of all CPUs busy\n(anything else "
        "running counts too)."
    )
    return met_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per side")
    parser.add_argument("--low-clients", type=int, default=50)
    parser.add_argument("--low-rate", type=int, default=100)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--two-clients", type=int, default=1000)
    parser.add_argument("--web-procs", type=int, default=2, help="daphne processes for 'two'")
    parser.add_argument("--client-procs", type=int, default=CLIENT_PROCS)
    parser.add_argument(
        "--only", default="low,high,two", help="comma-separated loads: low, high, two"
    )
    parser.add_argument(
        "--bare-per-tick-high",
        action="store_true",
        help="also run the per-tick bare server at the high load (it falls far behind and "
        "buffers hundreds of MB)",
    )
    args = parser.parse_args()
    args.only = {x.strip() for x in args.only.split(",")}
    redis_url = os.environ.get("REDIS_URL")
    if not (os.environ.get("DATABASE_URL") and redis_url):
        raise SystemExit("Set DATABASE_URL and REDIS_URL (the real topology).")
    # A SIGTERM (a CI timeout) still stops the servers and drops the database below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    bench_url = throwaway_db.database_create(os.environ["DATABASE_URL"], prefix=DB_PREFIX)
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantsaas.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    import django

    loads = {}
    try:
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        key = bench_account(max(args.low_clients, args.clients, args.two_clients))
        loads = run_all(args, key, redis_url)
    finally:
        from django.db import connections

        connections.close_all()
        throwaway_db.database_drop(bench_url, prefix=DB_PREFIX)
        with contextlib.suppress(Exception):
            import redis

            from marketdata.streaming.store import replay_key

            redis.Redis.from_url(redis_url).delete(replay_key(CHANNEL))
    sys.exit(0 if report(args, loads) else 1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--baseline-server":
        baseline_server(int(sys.argv[2]), os.environ["REDIS_URL"])
    else:
        main()
