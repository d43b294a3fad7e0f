"""Stream fan-out: N clients on one channel at R ticks a second, ours vs a plain server.

    DATABASE_URL=postgres://... REDIS_URL=redis://... python bench/fanout.py \
        [--clients 500] [--rate 1000] [--seconds 10]

Runs, on 127.0.0.1 only, for a bounded time and then stops itself:

1. ours: one daphne process serving /ws/v1/stream; the feed side is the real
   Publisher (batching) writing to the Redis channel layer; N clients subscribe
   to one trades channel.
2. baseline: a plain ``websockets`` server that receives the same ticks over
   Redis pub/sub and broadcasts each tick as one frame to the same N clients.

Reports ticks delivered per second, p50/p99/max latency from feed publish to
client receive, ticks dropped (ours: counted in ``lagged``), and server CPU
seconds per million ticks delivered, with our ratio to the baseline.
Targets (issue 5): every tick delivered or counted, p99 < 250 ms, CPU within 3x.
Bench rows (a user, an organization, a plan and a key) are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHANNEL = "trades.sim.BTC-USD"
PUBSUB = "bench:fanout:ticks"
WORKERS = min(8, max(2, (os.cpu_count() or 4) - 2))


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
def client_worker(url, headers, origin, count, subscribe, window, ready, results):
    import orjson
    import websockets

    gate = asyncio.Semaphore(20)  # connect in waves: daphne's listen backlog is small

    async def one(stats):
        try:
            await gate.acquire()
            ws = await websockets.connect(
                url, additional_headers=headers, origin=origin, max_queue=None, open_timeout=60
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
            while True:
                frame = orjson.loads(await ws.recv())
                received = now_ms()
                kind = frame.get("type")
                if kind == "lagged":
                    stats["dropped"] += frame["missed"]
                    continue
                if kind != "update":
                    continue
                # Steady state: what arrives during the measured window, however old.
                if not window[0] <= received < window[1]:
                    continue
                records = frame["data"]
                stats["ticks"] += len(records)
                # Latency of the oldest and newest record of the frame: cheap, and bounds it.
                stats["latencies"].append(received - records[0]["recv_ts"])
                stats["latencies"].append(received - records[-1]["recv_ts"])

    async def main():
        stats = {"ticks": 0, "dropped": 0, "latencies": []}
        tasks = [asyncio.create_task(one(stats)) for _ in range(count)]
        give_up = time.monotonic() + window[2]
        while time.monotonic() < give_up and not (window[1] and now_ms() > window[1] + 500):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        results.put(stats)

    asyncio.run(main())


# --- the baseline server --------------------------------------------------------------------
def baseline_server(port: int, redis_url: str) -> None:
    import redis.asyncio as aioredis
    import websockets
    from websockets.asyncio.server import broadcast, serve

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
        async with serve(handler, "127.0.0.1", port, max_queue=None):
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


async def load_baseline(rate: int, seconds: float, redis_url: str) -> int:
    import orjson
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    seq = 0

    async def send(tick):
        nonlocal seq
        seq += 1
        tick = {**tick, "recv_ts": int(now_ms())}
        frame = {"type": "update", "channel": CHANNEL, "seq": seq, "data": [tick]}
        await client.publish(PUBSUB, orjson.dumps(frame))

    try:
        return await _paced(rate, seconds, send)
    finally:
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


def run_side(name, url, headers, origin, subscribe, clients, rate, seconds, server_pid, load):
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    window = ctx.Array("d", [0.0, 0.0, seconds + 120], lock=False)
    per = [clients // WORKERS + (1 if i < clients % WORKERS else 0) for i in range(WORKERS)]
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

    async def drive():
        task = asyncio.ensure_future(load(warmup + seconds + 0.5))
        await asyncio.sleep(warmup)
        cpu["start"] = cpu_seconds(server_pid)
        await asyncio.sleep(seconds)
        cpu["end"] = cpu_seconds(server_pid)
        return await task

    asyncio.run(drive())
    stats = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    ticks = sum(s["ticks"] for s in stats)
    dropped = sum(s["dropped"] for s in stats)
    latencies = sorted(x for s in stats for x in s["latencies"])

    def pct(q):
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))]
            if latencies
            else float("nan")
        )

    expected = clients * rate * seconds
    cpu_used = cpu["end"] - cpu["start"]
    return {
        "name": name,
        "ticks_per_s": ticks / seconds,
        "delivered_share": ticks / expected,
        "dropped": dropped,
        "p50": pct(0.5),
        "p99": pct(0.99),
        "max": latencies[-1] if latencies else float("nan"),
        "cpu_per_million": cpu_used / max(ticks, 1) * 1e6,
    }


def bench_account(clients: int):
    from accounts.models import User
    from accounts.services.api_keys import api_key_create
    from accounts.services.organizations import organization_create
    from billing.models import Plan, PlanOverride
    from marketdata.models import Exchange, Instrument

    exchange, _ = Exchange.objects.get_or_create(id="sim", defaults={"name": "Simulated"})
    Instrument.objects.get_or_create(
        exchange=exchange,
        ccxt_symbol="BTC/USD",
        defaults={
            "symbol": "BTC-USD",
            "base": "BTC",
            "quote": "USD",
            "price_precision": "0.01",
            "size_precision": "0.0001",
            "active": True,
        },
    )
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
    key = api_key_create(organization=org, created_by=user, name="bench").raw_key
    return user, org, plan, key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL")
    if not (os.environ.get("DATABASE_URL") and redis_url):
        raise SystemExit("Set DATABASE_URL and REDIS_URL (the real topology).")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantsaas.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    import django

    django.setup()
    user, org, plan, key = bench_account(args.clients)
    servers: list[subprocess.Popen] = []
    results = []
    try:
        port = free_port()
        daphne = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "-v",
                "0",
                "quantsaas.asgi:application",
            ],
            cwd=ROOT,
            env={**os.environ, "LOG_LEVEL": "WARNING"},
            start_new_session=True,
        )
        servers.append(daphne)
        wait_port(port)
        results.append(
            run_side(
                "ours (daphne)",
                f"ws://127.0.0.1:{port}/ws/v1/stream",
                {"Authorization": f"Bearer {key}"},
                f"http://127.0.0.1:{port}",
                True,
                args.clients,
                args.rate,
                args.seconds,
                daphne.pid,
                lambda s: load_ours(args.rate, s),
            )
        )
        os.killpg(daphne.pid, signal.SIGTERM)
        base_port = free_port()
        baseline = subprocess.Popen(
            [sys.executable, __file__, "--baseline-server", str(base_port)],
            cwd=ROOT,
            env=os.environ.copy(),
            start_new_session=True,
        )
        servers.append(baseline)
        wait_port(base_port)
        results.append(
            run_side(
                "plain websockets",
                f"ws://127.0.0.1:{base_port}",
                {},
                None,
                False,
                args.clients,
                args.rate,
                args.seconds,
                baseline.pid,
                lambda s: load_baseline(args.rate, s, redis_url),
            )
        )
    finally:
        for proc in servers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        org.delete()
        user.delete()
        plan.overrides.all().delete()
        plan.delete()
    print(f"\n{args.clients} clients x {args.rate} ticks/s for {args.seconds:.0f} s\n")
    print(
        f"{'server':18} {'ticks/s':>10} {'delivered':>9} {'dropped':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7} {'CPU s/M ticks':>13}"
    )
    for r in results:
        print(
            f"{r['name']:18} {r['ticks_per_s']:10.0f} {r['delivered_share']:9.1%} "
            f"{r['dropped']:8d} {r['p50']:7.1f} {r['p99']:7.1f} {r['max']:7.1f} "
            f"{r['cpu_per_million']:13.2f}"
        )
    if len(results) == 2:
        ours, base = results
        if not base["ticks_per_s"]:
            print("\nthe baseline delivered nothing in the window")
            return
        print(
            f"\nratio ours/plain: throughput {ours['ticks_per_s'] / base['ticks_per_s']:.2f}, "
            f"CPU per tick {ours['cpu_per_million'] / base['cpu_per_million']:.2f} "
            "(target <= 3)"
        )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--baseline-server":
        baseline_server(int(sys.argv[2]), os.environ["REDIS_URL"])
    else:
        main()
