"""REST candles (1,000 rows): our endpoint vs a bare Django view returning the same bytes.

    DATABASE_URL=postgres://... REDIS_URL=redis://... python bench/rest_candles.py \
        [--seconds 5] [--connections 4] [--rounds 5] [--encodings gzip,identity]

What runs, on 127.0.0.1 only, for a bounded time:

1. A throwaway database `qs_bench_<pid>` is created on the DATABASE_URL server, migrated,
   and seeded with 1,000+ one-minute candles for sim BTC-USD, an organization on a
   bench plan (enterprise values with a limit the load cannot reach: the limiter still
   runs on every request, it just never refuses) and an API key.
2. One daphne process (the production server) serves the full project with this module
   as ROOT_URLCONF: the project's URLs plus `/bench/bare-candles`, a plain Django view
   that returns the exact bytes our endpoint produced, through the same middleware.
3. A bounded load generator (`wrk` when on PATH, else a few Python processes with
   keep-alive http.client) drives GET /api/v1/markets/sim/BTC-USD/candles?interval=1m
   &limit=1000 with the key, then the bare view, in alternating rounds.

Prints requests/s and p99 for each side and encoding (medians over the rounds), and the
ratio ours/bare: the median of the rounds' ratios, each round running the two sides back
to back in alternating order, so that load from elsewhere on the machine hits both
(target >= 0.7). The server, the database and the bench files are removed at
the end. This module doubles as the bench server's urlconf (`urlpatterns` below).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import throwaway_db  # noqa: E402  (needs ROOT on the path)

OURS_PATH = "/api/v1/markets/sim/BTC-USD/candles?interval=1m&limit=1000"
BARE_PATH = "/bench/bare-candles"
BODY_ENV = "QS_BENCH_REST_BODY"  # the file holding the bytes the bare view returns
ROWS = 1_000
TARGET = 0.7


# --- the bench server's urlconf ---------------------------------------------------------------
def _urlpatterns() -> list:
    from django.http import HttpResponse
    from django.urls import include, path

    body: list[bytes] = []

    def bare_candles(request):
        """The baseline: no auth, no query, no rendering; the same bytes, the same stack."""
        if not body:
            body.append(Path(os.environ[BODY_ENV]).read_bytes())
        return HttpResponse(body[0], content_type="application/json")

    return [path(BARE_PATH.lstrip("/"), bare_candles), path("", include("quantsaas.urls"))]


def __getattr__(name: str):
    # Built on first access, so importing this module never needs Django configured.
    if name == "urlpatterns":
        patterns = _urlpatterns()
        globals()["urlpatterns"] = patterns
        return patterns
    raise AttributeError(name)


def serve(port: int) -> None:
    """Run daphne in this process with this module as the urlconf."""
    import warnings

    import django
    from django.conf import settings

    warnings.filterwarnings("ignore", message="No directory at")  # static files: not served here
    django.setup()
    settings.ROOT_URLCONF = "bench.rest_candles"
    from quantsaas.web import main

    main(["-b", "127.0.0.1", "-p", str(port), "-v", "0", "quantsaas.asgi:application"])


# --- helpers ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise SystemExit(f"the bench server on port {port} did not start")


def get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


DB_PREFIX = "qs_bench_"


def database_create(url: str) -> str:
    return throwaway_db.database_create(url, prefix=DB_PREFIX)


def database_drop(url: str) -> None:
    throwaway_db.database_drop(url, prefix=DB_PREFIX)


def seed() -> str:
    """Candles, an organization on a high-limit plan and its API key; returns the raw key."""
    from datetime import UTC, datetime

    from accounts.models import User
    from accounts.services.api_keys import api_key_create
    from accounts.services.organizations import organization_create
    from billing.models import Plan, PlanOverride
    from marketdata.models import Candle1m

    instrument = throwaway_db.sim_btc_usd()
    # From 1,500 minutes ago to 2 h ahead: "the latest 1,000 minutes" stays full while
    # the bench runs. The current and future minutes are not final, as live ones are.
    minute = 60_000
    now = int(time.time() * 1000)
    first = now - now % minute - 1_500 * minute
    rng = random.Random(4)
    price, candles = 64_000.0, []
    for i in range(1_620):
        ts = first + i * minute
        o = price
        price *= 1 + rng.gauss(0, 0.0008)
        c = price
        volume = rng.uniform(0.5, 40)
        candles.append(
            Candle1m(
                instrument=instrument,
                ts=datetime.fromtimestamp(ts / 1000, tz=UTC),
                open=round(o, 2),
                high=round(max(o, c) * (1 + rng.uniform(0, 0.0005)), 2),
                low=round(min(o, c) * (1 - rng.uniform(0, 0.0005)), 2),
                close=round(c, 2),
                volume=round(volume, 4),
                buy_volume=round(volume * rng.uniform(0.2, 0.8), 4),
                trade_count=rng.randint(20, 900),
                is_final=ts + minute <= now,
            )
        )
    Candle1m.objects.bulk_create(candles, batch_size=2_000)

    enterprise = Plan.objects.get(code="enterprise")
    plan = Plan.objects.create(
        **{
            **{f.attname: getattr(enterprise, f.attname) for f in Plan._meta.concrete_fields},
            "id": None,
            "code": "bench-rest",
            "name": "Bench (enterprise, unthrottled)",
            "is_public": False,
            "requests_per_minute": 100_000_000,
        }
    )
    user = User.objects.create_user(email="bench@bench.invalid", password=None)
    organization = organization_create(name="Bench REST", owner=user)
    PlanOverride.objects.create(organization=organization, plan=plan, reason="bench")
    return api_key_create(organization=organization, created_by=user, name="bench").raw_key


# --- load generators --------------------------------------------------------------------------
WRK_SCRIPT = """
done = function(summary, latency, requests)
  io.write(string.format('{"requests": %d, "duration_us": %d, "p99_us": %d, '
    .. '"p50_us": %d, "non2xx": %d, "errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(99), latency:percentile(50),
    summary.errors.status, summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
end
"""


def load_wrk(
    port: int, path: str, headers: dict, seconds: float, connections: int, workdir: Path
) -> dict:
    script = workdir / "report.lua"
    script.write_text(WRK_SCRIPT)
    command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:.0f}s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command += ["-s", str(script), f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    return {
        "rps": report["requests"] / (report["duration_us"] / 1e6),
        "p50_ms": report["p50_us"] / 1000,
        "p99_ms": report["p99_us"] / 1000,
        "failed": report["non2xx"] + report["errors"],
    }


def _client(port: int, path: str, headers: dict, seconds: float, results) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, failed = [], 0
    deadline = time.perf_counter() + seconds
    while (started := time.perf_counter()) < deadline:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        failed += response.status != 200
    conn.close()
    results.put((latencies, failed))


def load_python(port: int, path: str, headers: dict, seconds: float, connections: int) -> dict:
    """Fallback without wrk: one keep-alive connection per process, closed loop."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_client, args=(port, path, headers, seconds, results))
        for _ in range(connections)
    ]
    for p in procs:
        p.start()
    parts = [results.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join(10)
    latencies = sorted(x for lat, _ in parts for x in lat)
    return {
        "rps": len(latencies) / seconds,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000,
        "failed": sum(f for _, f in parts),
    }


# --- driver -----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per side, round, encoding")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--encodings", default="gzip,identity")
    parser.add_argument("--python-load", action="store_true", help="ignore wrk if present")
    args = parser.parse_args()
    url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not (url.startswith("postgres") and redis_url):
        raise SystemExit("Set DATABASE_URL (PostgreSQL) and REDIS_URL: the real topology.")
    use_wrk = shutil.which("wrk") is not None and not args.python_load

    # A SIGTERM (a CI timeout) still stops the server and drops the database below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    bench_url = database_create(url)
    workdir = Path(tempfile.mkdtemp(prefix="qs-bench-rest-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantsaas.settings")
    os.environ.update(
        DATABASE_URL=bench_url,
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
        **{BODY_ENV: str(workdir / "body.json")},
    )
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    server = None
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0, interactive=False)
        key = seed()
        connections.close_all()

        port = free_port()
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port)], cwd=ROOT, start_new_session=True
        )
        wait_port(port)
        # As behind the production TLS proxy: without it, SECURE_SSL_REDIRECT answers 301.
        proxy = {"X-Forwarded-Proto": "https"}
        auth = {**proxy, "Authorization": f"Bearer {key}"}
        status, body = get(port, OURS_PATH, auth)
        if status != 200:
            raise SystemExit(f"our endpoint answered {status}: {body[:300]!r}")
        rows = len(json.loads(body)["data"])
        if rows != ROWS:
            raise SystemExit(f"expected {ROWS} candles, got {rows}")
        (workdir / "body.json").write_bytes(body)
        status, bare = get(port, BARE_PATH, proxy)
        assert status == 200 and bare == body, "the bare view must return the same bytes"

        sides = {"ours": (OURS_PATH, auth), "bare": (BARE_PATH, proxy)}
        encodings = [e.strip() for e in args.encodings.split(",") if e.strip()]
        for encoding in encodings:  # warm both paths (connections, caches) before measuring
            for path, headers in sides.values():
                load = {**headers, "Accept-Encoding": encoding}
                run_load(use_wrk, port, path, load, 2, args.connections, workdir)
        for round_number in range(args.rounds):
            for encoding in encodings:
                # Back to back, in alternating order (ABBA...): machine-load drift between
                # the two halves of a round cancels out over the rounds.
                order = list(sides.items())
                if round_number % 2:
                    order.reverse()
                for side, (path, headers) in order:
                    load = {**headers, "Accept-Encoding": encoding}
                    result = run_load(
                        use_wrk, port, path, load, args.seconds, args.connections, workdir
                    )
                    if result["failed"]:
                        raise SystemExit(f"{side} {encoding}: {result['failed']} failed requests")
                    results.setdefault((side, encoding), []).append(result)
    finally:
        if server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(10)
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        database_drop(bench_url)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nGET {OURS_PATH}  ({ROWS} rows, {len(body):,} bytes uncompressed)")
    print(
        f"daphne on 127.0.0.1, load: {'wrk' if use_wrk else 'python http.client'}, "
        f"{args.connections} keep-alive connections, {args.rounds} x {args.seconds:.0f} s per "
        f"side and encoding (medians)\n"
    )
    print(f"{'side':6} {'encoding':9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for (side, encoding), runs in results.items():
        rps = statistics.median(r["rps"] for r in runs)
        p50 = statistics.median(r["p50_ms"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)
        print(f"{side:6} {encoding:9} {rps:9,.0f} {p50:8.2f} {p99:8.2f}")
    print()
    for encoding in encodings:
        ours, bare = results[("ours", encoding)], results[("bare", encoding)]
        # Each round's two runs ran back to back, so their ratio saw the same machine.
        ratios = [o["rps"] / b["rps"] for o, b in zip(ours, bare, strict=True)]
        ratio = statistics.median(ratios)
        verdict = "OK" if ratio >= TARGET else "BELOW TARGET"
        p99_ours = statistics.median(r["p99_ms"] for r in ours)
        p99_bare = statistics.median(r["p99_ms"] for r in bare)
        print(
            f"ratio ours/bare, {encoding:8}: {ratio:5.2f} req/s (target >= {TARGET})  {verdict};"
            f"  p99 {p99_ours:.2f} ms vs {p99_bare:.2f} ms;"
            f"  rounds {' '.join(f'{r:.2f}' for r in ratios)}"
        )


def run_load(use_wrk, port, path, headers, seconds, connections, workdir) -> dict:
    if use_wrk:
        return load_wrk(port, path, headers, seconds, connections, workdir)
    return load_python(port, path, headers, seconds, connections)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    else:
        main()
