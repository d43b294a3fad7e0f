"""Stream fan-out: N clients on one channel at R ticks a second, ours vs a plain server.

    DATABASE_URL=postgres://... REDIS_URL=redis://... python bench/fanout.py \
        [--clients 500] [--rate 1000] [--seconds 10] [--client-procs 2] [--only ours|plain]

Runs, on 127.0.0.1 only, for a bounded time and then stops itself:

1. ours: one daphne process serving /ws/v1/stream; the feed side is the real
   Publisher (batching) writing to the Redis channel layer; N clients subscribe
   to one trades channel.
2. plain, per tick: a plain ``websockets`` server that receives the same ticks
   over Redis pub/sub and broadcasts each tick as one frame (issue 5's baseline).
3. plain, batched: the same plain server fed our batches (one frame per
   STREAM_BATCH_MS window), so the per-frame cost of the two servers compares
   on identical frames.

The same load generator serves every side: N connections shared by a few
client processes (uvloop, compression off, frames read as bytes and only the
seq, record count and oldest/newest ``recv_ts`` extracted). Reports ticks
delivered per second, p50/p99/max latency from our receipt of the tick
(``recv_ts``) to client receive, ticks counted in ``lagged``, messages lost
without a word (seq gaps), server CPU seconds per million ticks delivered, the
cores used by server and clients and how busy the whole machine was (other
work on it skews every figure), with our ratios to the plain server.
Targets (issue 5): every tick delivered or counted, p99 < 250 ms, CPU within 3x.
Bench rows (a user, an organization, a plan and a key) are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import throwaway_db  # noqa: E402  (needs ROOT on the path)

DB_PREFIX = "qs_bench_fanout_"
ASGI_APP = "quantsaas.asgi:application"
CHANNEL = "trades.sim.BTC-USD"
PUBSUB = "bench:fanout:ticks"
# Several client processes share the connections; more than the cores only adds switching.
CLIENT_PROCS = min(4, max(2, os.cpu_count() or 2))


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


def wait_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise SystemExit(f"server on {port} did not start")


# --- clients (separate processes, so the server is what is measured) -----------------------
# The generator must cost far less per frame than the servers it measures, and the same for
# both: frames are taken as bytes (no UTF-8 decode, no JSON parse); the seq, the record count
# and the oldest and newest recv_ts are read with C-level searches. Only rare frames (lagged)
# are parsed. Compression is off on every side, as it is in production (daphne accepts none).
UPDATE_PREFIX = b'{"type":"update"'
RECV_TS = re.compile(rb'"recv_ts":(\d+)')
SEQ = re.compile(rb'"seq":(\d+)')


def quiet_teardown() -> None:
    """Stopping mid-stream makes asyncio log every write to a closed socket; not a finding."""
    logging.getLogger("asyncio").setLevel(logging.ERROR)


def client_worker(url, headers, origin, count, subscribe, window, ready, results):
    quiet_teardown()
    import orjson
    import websockets

    gate = asyncio.Semaphore(20)  # connect in waves: daphne's listen backlog is small

    async def one(stats):
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
                await ws.send(orjson.dumps({"op": "subscribe", "channels": [CHANNEL]}).decode())
                await ws.recv()  # subscribed
            gate.release()
            ready.put(1)
            recv, latencies, last_seq = ws.recv, stats["latencies"], 0
            while True:
                frame = await recv(decode=False)
                received = time.time() * 1000
                if not frame.startswith(UPDATE_PREFIX):
                    message = orjson.loads(frame)
                    if message.get("type") == "lagged":
                        last_seq = message["to_seq"]  # skipped, and said so
                        if window[0] <= received < window[1]:
                            stats["dropped"] += message["missed"]
                    continue
                seq = int(SEQ.search(frame).group(1))
                inside = window[0] <= received < window[1]
                if last_seq and seq != last_seq + 1 and inside:
                    stats["gaps"] += seq - last_seq - 1  # lost without a word: must stay 0
                last_seq = seq
                # Steady state: what arrives during the measured window, however old.
                if not inside:
                    continue
                stats["frames"] += 1
                stats["ticks"] += frame.count(b'"recv_ts":')
                # The oldest and the newest record of the frame bound every record's latency.
                latencies.append(received - int(RECV_TS.search(frame).group(1)))
                tail = frame.rfind(b'"recv_ts":')
                latencies.append(received - int(RECV_TS.match(frame, tail).group(1)))

    async def main():
        stats = {"ticks": 0, "frames": 0, "dropped": 0, "gaps": 0, "latencies": []}
        tasks = [asyncio.create_task(one(stats)) for _ in range(count)]
        give_up = time.monotonic() + window[2]
        while time.monotonic() < give_up and not (window[1] and now_ms() > window[1] + 500):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        results.put(stats)

    try:  # the cheapest event loop there is, for both servers alike
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


# --- the baseline server --------------------------------------------------------------------
def baseline_server(port: int, redis_url: str) -> None:
    import redis.asyncio as aioredis
    import websockets
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

    del websockets
    asyncio.run(main())


# --- load -----------------------------------------------------------------------------------
async def load_ours(rate: int, seconds: float) -> int:
    from marketdata.feeds.publish import Publisher

    publisher = Publisher()
    return await _paced(
        rate, seconds, lambda tick: publisher.publish("trades", "sim", "BTC/USD", [tick])
    )


async def load_baseline(rate: int, seconds: float, redis_url: str, window_ms: float) -> int:
    """Ticks over Redis pub/sub to the plain server: one frame per tick, or batched like ours.

    Batched, the plain server gets exactly our frames (one per window carrying every tick of
    the window, seq per frame), so the comparison isolates the server's per-frame cost.
    """
    import orjson
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    seq, pending = 0, []

    async def publish(data):
        nonlocal seq
        seq += 1
        frame = {"type": "update", "channel": CHANNEL, "seq": seq, "data": data}
        await client.publish(PUBSUB, orjson.dumps(frame))

    async def send(tick):
        tick = {**tick, "recv_ts": int(now_ms())}
        if window_ms:
            pending.append(tick)
        else:
            await publish([tick])

    async def flush_every_window():
        while True:
            await asyncio.sleep(window_ms / 1000)
            if pending:
                data = pending[:]
                pending.clear()
                await publish(data)

    flusher = asyncio.ensure_future(flush_every_window()) if window_ms else None
    try:
        return await _paced(rate, seconds, send)
    finally:
        if flusher is not None:
            flusher.cancel()
        await client.aclose()


async def _paced(rate: int, seconds: float, send) -> int:
    step = 0.01
    per_step = max(1, round(rate * step))
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
        next_at = start + (sent / per_step) * step
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return sent


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat: others' load shows here."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def run_side(name, url, headers, origin, subscribe, args, server_pid, load):
    clients, rate, seconds, workers = args.clients, args.rate, args.seconds, args.client_procs
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    window = ctx.Array("d", [0.0, 0.0, seconds + 120], lock=False)
    per = [clients // workers + (1 if i < clients % workers else 0) for i in range(workers)]
    procs = [
        ctx.Process(
            target=client_worker,
            args=(url, headers, origin, n, subscribe, window, ready, results),
            daemon=True,
        )
        for n in per
        if n
    ]
    for p in procs:
        p.start()
    for _ in range(clients):
        status = ready.get(timeout=120)
        if status != 1:
            raise SystemExit(f"a client failed to connect: {status}")
    warmup = 2.0
    window[0] = now_ms() + warmup * 1000
    window[1] = window[0] + seconds * 1000
    cpu = {}

    def sample(at: str) -> None:
        cpu[at] = (
            cpu_seconds(server_pid),
            sum(cpu_seconds(p.pid) for p in procs),
            machine_busy(),
        )

    async def drive():
        task = asyncio.ensure_future(load(warmup + seconds + 0.5))
        await asyncio.sleep(warmup)
        sample("start")
        await asyncio.sleep(seconds)
        sample("end")
        return await task

    asyncio.run(drive())
    stats = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    ticks = sum(s["ticks"] for s in stats)
    latencies = sorted(x for s in stats for x in s["latencies"])

    def pct(q):
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))]
            if latencies
            else float("nan")
        )

    (server0, clients0, (busy0, total0)), (server1, clients1, (busy1, total1)) = (
        cpu["start"],
        cpu["end"],
    )
    return {
        "name": name,
        "ticks_per_s": ticks / seconds,
        "frames_per_s": sum(s["frames"] for s in stats) / seconds,
        "delivered_share": ticks / (clients * rate * seconds),
        "dropped": sum(s["dropped"] for s in stats),
        "gaps": sum(s["gaps"] for s in stats),
        "p50": pct(0.5),
        "p99": pct(0.99),
        "max": latencies[-1] if latencies else float("nan"),
        "server_cores": (server1 - server0) / seconds,
        "client_cores": (clients1 - clients0) / seconds,
        "machine_busy": (busy1 - busy0) / max(total1 - total0, 1),
        "cpu_per_million": (server1 - server0) / max(ticks, 1) * 1e6,
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


def report(args, results: list[dict]) -> None:
    print(
        f"\n{args.clients} clients x {args.rate} ticks/s for {args.seconds:.0f} s, "
        f"{args.client_procs} client processes, {os.cpu_count()} CPUs\n"
    )
    print(
        f"{'server':20} {'ticks/s':>8} {'deliv.':>6} {'frames/s':>8} {'lagged':>7} {'gaps':>5} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'CPU s/M':>7} {'server':>6} "
        f"{'clients':>7} {'machine':>7}"
    )
    for r in results:
        print(
            f"{r['name']:20} {r['ticks_per_s']:8.0f} {r['delivered_share']:6.1%} "
            f"{r['frames_per_s']:8.0f} {r['dropped']:7d} {r['gaps']:5d} {r['p50']:7.1f} "
            f"{r['p99']:7.1f} {r['max']:7.1f} {r['cpu_per_million']:7.2f} "
            f"{r['server_cores']:6.2f} {r['client_cores']:7.2f} {r['machine_busy']:7.0%}"
        )
    print(
        "\nlagged: ticks a slow client was told it missed; "
        "gaps: messages (seq) lost without a word;\n"
        "CPU s/M: server CPU seconds per million ticks delivered; server/clients: cores used; "
        "machine: share of all CPUs busy (anything else running counts too)."
    )
    ours = next((r for r in results if r["name"].startswith("ours")), None)
    for base in (r for r in results if r is not ours):
        if ours is None or not base["ticks_per_s"]:
            continue
        print(
            f"ratio ours / {base['name']}: throughput "
            f"{ours['ticks_per_s'] / base['ticks_per_s']:.2f}, CPU per tick "
            f"{ours['cpu_per_million'] / base['cpu_per_million']:.2f} (target <= 3)"
        )
    if ours is not None:
        expected = args.clients * args.rate * args.seconds
        checks = {
            "every tick delivered in the window or counted in lagged": (
                ours["dropped"] + ours["ticks_per_s"] * args.seconds >= 0.99 * expected
                and not ours["gaps"]
            ),
            "p99 < 250 ms": ours["p99"] < 250,
        }
        for base in (r for r in results if r is not ours):
            checks[f"CPU per tick <= 3x {base['name']}"] = (
                ours["cpu_per_million"] <= 3 * base["cpu_per_million"]
            )
        for what, ok in checks.items():
            print(f"  {'met    ' if ok else 'NOT met'}  {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--client-procs", type=int, default=CLIENT_PROCS)
    parser.add_argument("--only", choices=["ours", "plain"], help="run one side")
    args = parser.parse_args()
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

    results = []
    try:
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        key = bench_account(args.clients)
        if args.only != "plain":
            daphne, port = start_server(
                ["-m", "quantsaas.web", "-b", "127.0.0.1", "-v", "0", ASGI_APP, "-p"],
                {**os.environ, "LOG_LEVEL": "WARNING"},
            )
            try:
                results.append(
                    run_side(
                        "ours (daphne)",
                        f"ws://127.0.0.1:{port}/ws/v1/stream",
                        {"Authorization": f"Bearer {key}"},
                        f"http://127.0.0.1:{port}",
                        True,
                        args,
                        daphne.pid,
                        lambda s: load_ours(args.rate, s),
                    )
                )
            finally:
                stop(daphne)
        if args.only != "ours":
            batch_ms = float(os.environ.get("STREAM_BATCH_MS", "100"))
            sides = [("plain, per tick", 0.0), (f"plain, {batch_ms:.0f} ms batch", batch_ms)]
            for name, window_ms in sides:
                baseline, port = start_server([__file__, "--baseline-server"], os.environ.copy())
                try:
                    results.append(
                        run_side(
                            name,
                            f"ws://127.0.0.1:{port}",
                            {},
                            None,
                            False,
                            args,
                            baseline.pid,
                            lambda s, w=window_ms: load_baseline(args.rate, s, redis_url, w),
                        )
                    )
                finally:
                    stop(baseline)
    finally:
        from django.db import connections

        connections.close_all()
        throwaway_db.database_drop(bench_url, prefix=DB_PREFIX)
    report(args, results)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--baseline-server":
        baseline_server(int(sys.argv[2]), os.environ["REDIS_URL"])
    else:
        main()
