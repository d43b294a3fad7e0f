"""Scale-out proof: the real topology on this machine, under stream and REST load.

    DATABASE_URL=postgres://... python bench/topology.py \
        [--web 2] [--feeds 1] [--workers 1] [--clients 300] [--seconds 60] [--rest-rate 40]

Starts, on 127.0.0.1 and free ports: a Redis server of its own, a throwaway PostgreSQL
database (migrated; only the sim exchange enabled, its instruments spread over the
feed shards), N web processes (``python -m quantsaas.web``), M feed runners
(``run_feeds --shard i``, the simulator at real-time speed) and K Celery workers, all on
that Redis and that database. Then, for ``--seconds``:

- ``--clients`` WebSocket clients, spread round-robin over the web processes, each
  subscribed to the trades and book channels of one sim instrument, with real API keys.
  A frame may merge messages (``from_seq``..``seq``): a gap is a frame whose
  ``from_seq`` (or ``seq``) is not last + 1 that no ``lagged`` notice announced.
  Latency is receipt time minus the newest record's ``recv_ts`` (the feed's receive
  stamp), so it spans feed -> Redis -> hub -> client.
- REST load at ``--rest-rate`` requests/s, round-robin over the web processes: candles,
  trades and a 10-option Black-Scholes batch, with API keys of a plan allowing the rate
  (the unauthenticated limit, 60/min per address, would otherwise answer 429).

It reports errors, seq gaps, p50/p99 latencies and the CPU each process used, scrapes
every web process's /metrics, and stops everything (database dropped, Redis stopped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import throwaway_db  # noqa: E402
from bench.fanout import cpu_seconds, free_port, machine_busy, wait_port  # noqa: E402

DB_PREFIX = "qs_bench_topology_"
SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
CLIENT_PROCS = 2
METRICS_TOKEN = "bench-topology"  # noqa: S105 (a local bench value)
WARMUP_SECONDS = 5.0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# --- processes --------------------------------------------------------------------------


class Proc:
    """A child in its own session, so its CPU includes its children (Celery's pool)."""

    def __init__(self, name: str, args: list[str], env: dict, logs: Path) -> None:
        self.name, self.args, self.env, self.log = name, args, env, logs / f"{name}.log"
        self.popen = None

    def start(self) -> Proc:
        import subprocess

        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def cpu(self) -> float:
        """CPU seconds of every process in the session (the process and its children)."""
        total = 0.0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == self.popen.pid:  # session id
                    total += cpu_seconds(int(entry.name))
        return total

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(15)
        except Exception:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def market_prepare(feeds: int, orgs: int) -> list[str]:
    """Only sim enabled, its instruments over `feeds` shards; a bench plan; API keys."""
    from accounts.models import User
    from accounts.services.api_keys import api_key_create
    from accounts.services.organizations import organization_create
    from billing.models import Plan, PlanOverride
    from marketdata.models import Exchange, Instrument

    Exchange.objects.exclude(id="sim").update(enabled=False)
    for index, instrument in enumerate(Instrument.objects.filter(exchange_id="sim")):
        instrument.feed_shard = index % feeds
        instrument.active = True
        instrument.save(update_fields=["feed_shard", "active"])
    plan, _ = Plan.objects.update_or_create(
        code="bench",
        defaults={
            "name": "Bench",
            "price_cents": 0,
            "requests_per_minute": 1_000_000,
            "ws_connections": 10_000,
            "ws_subscriptions": 50,
            "stream_delay_seconds": 0,
            "history_days": None,
            "api_keys": 100,
            "analytics": True,
            "backtests_per_day": 1000,
            "is_public": False,
        },
    )
    keys = []
    for n in range(orgs):
        user = User.objects.create_user(email=f"bench{n}@bench.test", password=None)
        org = organization_create(name=f"Bench {n}", owner=user)
        PlanOverride.objects.create(organization=org, plan=plan, reason="bench")
        keys.append(api_key_create(organization=org, created_by=user, name="bench").raw_key)
    return keys


# --- load (client processes) -------------------------------------------------------------


def ws_clients(ports, keys, indexes, seconds, start_at, out) -> None:
    """The WebSocket clients `indexes`, in one process; results through `out`."""

    async def one(index: int, stats: dict, latencies: list) -> None:
        import orjson
        import websockets

        port = ports[index % len(ports)]
        symbol = SYMBOLS[index % len(SYMBOLS)]
        channels = [f"trades.sim.{symbol}", f"book.sim.{symbol}"]
        last: dict[str, int] = {}
        url = f"ws://127.0.0.1:{port}/ws/v1/stream"
        try:
            async with websockets.connect(
                url,
                additional_headers={"Authorization": f"Bearer {keys[index % len(keys)]}"},
                origin=f"http://127.0.0.1:{port}",
                open_timeout=30,
                close_timeout=1,
                compression=None,
                max_queue=None,
            ) as ws:
                await ws.send(json.dumps({"op": "subscribe", "channels": channels}))
                end = start_at + seconds
                while True:
                    remaining = end - time.time()
                    if remaining <= 0:
                        break
                    try:
                        raw = await asyncio.wait_for(ws.recv(decode=False), remaining)
                    except TimeoutError:
                        break
                    received = time.time() * 1000
                    frame = orjson.loads(raw)
                    kind, channel = frame.get("type"), frame.get("channel")
                    if kind == "lagged":
                        stats["lagged"] += frame["missed"]
                        last[channel] = frame["to_seq"]
                    elif kind == "snapshot":
                        last[channel] = frame["seq"]
                    elif kind == "update":
                        first = frame.get("from_seq", frame["seq"])
                        if channel in last and first != last[channel] + 1:
                            stats["gaps"] += 1
                            stats["gap_messages"] += max(0, first - last[channel] - 1)
                        last[channel] = frame["seq"]
                        if received / 1000 >= start_at:  # the measured window
                            stats["frames"] += 1
                            data = frame["data"]
                            records = data if isinstance(data, list) else [data]
                            stats["records"] += len(records)
                            newest = records[-1].get("recv_ts") if records else None
                            if newest:
                                latencies.append(received - newest)
                    elif kind == "error":
                        stats["errors"] += 1
                        stats["error_codes"].append(frame.get("code"))
                stats["completed"] += 1
        except Exception as exc:
            stats["errors"] += 1
            stats["error_codes"].append(type(exc).__name__)

    async def main() -> None:
        stats = {
            "frames": 0,
            "records": 0,
            "gaps": 0,
            "gap_messages": 0,
            "lagged": 0,
            "errors": 0,
            "error_codes": [],
            "completed": 0,
        }
        latencies: list[float] = []
        await asyncio.gather(*(one(i, stats, latencies) for i in indexes))
        out.put({"ws": stats, "ws_latencies": latencies, "cpu": time.process_time()})

    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(main())


def rest_client(ports, keys, rate, seconds, start_at, out) -> None:
    """REST calls at `rate` per second, round-robin over ports and kinds."""

    async def main() -> None:
        import aiohttp

        calls = [
            ("candles", "GET", "/api/v1/markets/sim/BTC-USD/candles?interval=1m&limit=500", None),
            ("trades", "GET", "/api/v1/markets/sim/ETH-USD/trades?limit=200", None),
            (
                "options",
                "POST",
                "/api/v1/options/price",
                {
                    "options": [
                        {
                            "type": "call" if i % 2 else "put",
                            "spot": 100,
                            "strike": 80 + 4 * i,
                            "expiry": 0.5,
                            "rate": 0.03,
                            "dividend_yield": 0,
                            "volatility": 0.4,
                        }
                        for i in range(10)
                    ]
                },
            ),
        ]
        results = {kind: {"ok": 0, "errors": 0, "statuses": {}, "lat": []} for kind, *_ in calls}
        end = start_at + seconds
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            n = 0
            pending: set[asyncio.Task] = set()

            async def call(i: int, *, measured: bool = True) -> None:
                kind, method, path, body = calls[i % len(calls)]
                port = ports[(i // len(calls)) % len(ports)]
                headers = {"Authorization": f"Bearer {keys[i % len(keys)]}"}
                started = time.perf_counter()
                r = results[kind]
                try:
                    async with session.request(
                        method, f"http://127.0.0.1:{port}{path}", json=body, headers=headers
                    ) as response:
                        await response.read()
                        status = response.status
                except Exception as exc:
                    status = type(exc).__name__
                if not measured:  # warm-up: each process's first calls load code
                    return
                r["lat"].append((time.perf_counter() - started) * 1000)
                if status == 200:
                    r["ok"] += 1
                else:
                    r["errors"] += 1
                    r["statuses"][str(status)] = r["statuses"].get(str(status), 0) + 1

            for i in range(len(calls) * len(ports) * 3):
                await call(i, measured=False)
            await asyncio.sleep(max(0.0, start_at - time.time()))
            while time.time() < end:
                task = asyncio.create_task(call(n))
                pending.add(task)
                task.add_done_callback(pending.discard)
                n += 1
                await asyncio.sleep(max(0.0, start_at + n / rate - time.time()))
            await asyncio.gather(*pending, return_exceptions=True)
        out.put({"rest": results, "cpu": time.process_time()})

    asyncio.run(main())


# --- the run -------------------------------------------------------------------------------


def scrape(port: int) -> dict[str, float]:
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    totals: dict[str, float] = {}
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (local)
        for line in response.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                base = name.split("{")[0]
                totals[base] = totals.get(base, 0.0) + float(value)
    return totals


def run(args) -> dict:
    logs = Path(args.logs or f"/tmp/qs-bench-topology-{os.getpid()}")  # noqa: S108
    logs.mkdir(parents=True, exist_ok=True)
    redis_port = free_port()
    redis_proc = Proc(
        "redis",
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(redis_port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        dict(os.environ),
        logs,
    ).start()
    wait_port(redis_port)
    db_url = throwaway_db.database_create(os.environ["DATABASE_URL"], prefix=DB_PREFIX)
    procs: list[Proc] = []
    try:
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "SECRET_KEY": "bench-topology-only",
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "METRICS_TOKEN": METRICS_TOKEN,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "SIM_SPEED": "1",
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "quantsaas.settings",
        }
        env.pop("QUANTSAAS_TESTING", None)
        import subprocess

        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        os.environ.update(env)  # this process makes the keys in the same database
        import django

        django.setup()
        keys = market_prepare(args.feeds, orgs=4)
        from django.db import connections

        connections.close_all()
        web_ports = [free_port() for _ in range(args.web)]
        for port in web_ports:
            procs.append(
                Proc(
                    f"web-{port}",
                    [
                        sys.executable,
                        "-m",
                        "quantsaas.web",
                        "-b",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "quantsaas.asgi:application",
                    ],
                    env,
                    logs,
                )
            )
        for shard in range(args.feeds):
            procs.append(
                Proc(
                    f"feed-{shard}",
                    [sys.executable, "manage.py", "run_feeds", "--shard", str(shard)],
                    env,
                    logs,
                )
            )
        for n in range(args.workers):
            procs.append(
                Proc(
                    f"worker-{n}",
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "quantsaas",
                        "worker",
                        "--concurrency",
                        "1",
                        "-n",
                        f"bench{n}@%h",
                        "--loglevel",
                        "WARNING",
                    ],
                    env,
                    logs,
                )
            )
        for proc in procs:
            proc.start()
        for port in web_ports:
            wait_port(port)
        time.sleep(3)  # the feeds connect and publish

        start_at = time.time() + WARMUP_SECONDS
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        clients = [
            ctx.Process(
                target=ws_clients,
                args=(
                    web_ports,
                    keys,
                    list(range(p, args.clients, CLIENT_PROCS)),
                    args.seconds,
                    start_at,
                    out,
                ),
            )
            for p in range(CLIENT_PROCS)
        ]
        clients.append(
            ctx.Process(
                target=rest_client,
                args=(web_ports, keys, args.rest_rate, args.seconds, start_at, out),
            )
        )
        for c in clients:
            c.start()
        time.sleep(max(0.0, start_at - time.time()))
        cpu0 = {p.name: p.cpu() for p in procs}
        busy0 = machine_busy()
        time.sleep(args.seconds)
        cpu1 = {p.name: p.cpu() for p in procs}
        busy1 = machine_busy()
        results = [out.get(timeout=120) for _ in clients]
        for c in clients:
            c.join(30)
        metrics = {port: scrape(port) for port in web_ports}
        alive = {p.name: p.popen.poll() is None for p in procs}
    finally:
        for proc in reversed(procs):
            proc.stop()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        throwaway_db.database_drop(db_url, prefix=DB_PREFIX)
        redis_proc.stop()
    return summarize(
        args,
        results,
        cpu0,
        cpu1,
        sum(r.get("cpu", 0.0) for r in results),
        (busy0, busy1),
        metrics,
        alive,
        logs,
    )


def summarize(args, results, cpu0, cpu1, clients_cpu, busy, metrics, alive, logs) -> dict:
    ws = {
        "frames": 0,
        "records": 0,
        "gaps": 0,
        "gap_messages": 0,
        "lagged": 0,
        "errors": 0,
        "error_codes": [],
        "completed": 0,
    }
    latencies: list[float] = []
    rest: dict = {}
    for result in results:
        for key, value in result.get("ws", {}).items():
            ws[key] = ws[key] + value
        latencies += result.get("ws_latencies", [])
        rest.update(result.get("rest", {}))
    (b0, t0), (b1, t1) = busy
    return {
        "config": {
            "web": args.web,
            "feeds": args.feeds,
            "workers": args.workers,
            "clients": args.clients,
            "seconds": args.seconds,
            "rest_rate": args.rest_rate,
            "cores": os.cpu_count(),
        },
        "ws": {
            **{k: v for k, v in ws.items() if k != "error_codes"},
            "error_codes": sorted(set(map(str, ws["error_codes"])))[:10],
            "latency_ms_p50": percentile(latencies, 0.5),
            "latency_ms_p99": percentile(latencies, 0.99),
        },
        "rest": {
            kind: {
                "ok": r["ok"],
                "errors": r["errors"],
                "statuses": r["statuses"],
                "p50_ms": round(percentile(r["lat"], 0.5) or 0, 1),
                "p99_ms": round(percentile(r["lat"], 0.99) or 0, 1),
            }
            for kind, r in rest.items()
        },
        "cpu_percent": {
            name: round(100 * (cpu1[name] - cpu0[name]) / args.seconds, 1) for name in cpu0
        }
        | {"load clients (connect to close)": round(100 * clients_cpu / args.seconds, 1)},
        "machine_busy_percent": round(100 * (b1 - b0) / max(1, t1 - t0), 1),
        "web_metrics": {
            port: {
                k: m.get(k)
                for k in (
                    "quantsaas_stream_frames_delivered_total",
                    "quantsaas_stream_connections",
                    "quantsaas_http_requests_total",
                    "quantsaas_stream_refusals_total",
                )
            }
            for port, m in metrics.items()
        },
        "processes_alive_at_end": alive,
        "logs": str(logs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--web", type=int, default=2)
    parser.add_argument("--feeds", type=int, default=1, choices=(1, 2, 3))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rest-rate", type=float, default=40.0)
    parser.add_argument("--logs", default="")
    args = parser.parse_args()
    if "DATABASE_URL" not in os.environ:
        sys.exit("DATABASE_URL must name a PostgreSQL server (a throwaway database is made)")
    print(json.dumps(run(args), indent=2, default=str))


if __name__ == "__main__":
    main()
