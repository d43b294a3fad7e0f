"""Run one backtest in a child process with a CPU-time and an address-space limit.

Why a child process: the Celery worker is long-lived and shared by every organization's
jobs. A job that needs more memory or CPU than its budget must fail on its own, with a
reason, without taking the worker (or, in embedded mode, the web process) down. Limits set
with `setrlimit` in a fresh interpreter bind that job only; Celery's own time limits are
wall clock, and the solo pool does not enforce them at all.

The child is `python -m analytics.backtest_process`: it imports numpy and analytics.backtest
only (no Django, no database connection), sets its limits, reads the closes from stdin
(a JSON header line, then the raw int64 timestamps and float64 closes) and writes one JSON
object to stdout. While it runs, the parent calls `heartbeat` every few seconds, which is
how a job whose worker died is told apart from a slow one (analytics.services).
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import numpy as np

logger = logging.getLogger(__name__)

EQUITY_POINTS = 2_000  # the stored equity curve is thinned to at most this many points
_MEMORY_EXIT = 3
_INVALID_EXIT = 2


class BacktestLimitExceeded(Exception):
    """The job used more than its CPU or memory budget, or its process died."""


class BacktestOptions(TypedDict):
    """The keyword arguments of analytics.backtest.backtest a child is run with."""

    interval_ms: int
    params: dict[str, float]
    fee_bp: float
    slippage_bp: float
    allow_short: bool


class ChildAnswer(TypedDict):
    """What a child that finished writes: the metrics (non-finite ones as None) and the
    thinned equity curve as [ts_ms, equity] pairs."""

    metrics: dict[str, float | None]
    equity: list[list[float]]


def equity_points(ts: np.ndarray, equity: np.ndarray) -> list[list[float]]:
    step = max(1, math.ceil(equity.size / EQUITY_POINTS))
    index = np.arange(0, equity.size, step)
    if index[-1] != equity.size - 1:
        index = np.append(index, equity.size - 1)  # the final value is always there
    return [[int(ts[i]), float(equity[i])] for i in index]


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _address_space_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return None


def limits_apply(*, cpu_seconds: int, memory_mb: int) -> None:
    """CPU seconds (SIGXCPU at the soft limit, SIGKILL a second later) and `memory_mb` of
    address space on top of what the interpreter and numpy already map."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    current = _address_space_bytes()
    if current is not None:  # Linux; elsewhere only the CPU limit applies
        limit = current + memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _child(cpu_seconds: int, memory_mb: int) -> int:
    from analytics.backtest import backtest

    limits_apply(cpu_seconds=cpu_seconds, memory_mb=memory_mb)
    stdin = sys.stdin.buffer
    try:
        header = json.loads(stdin.readline())
        n = header.pop("bars")
        ts = np.frombuffer(stdin.read(8 * n), dtype=np.int64)
        close = np.frombuffer(stdin.read(8 * n), dtype=np.float64)
        result = backtest(header.pop("strategy"), ts, close, **header)
        answer: ChildAnswer = {
            "metrics": {key: _finite(value) for key, value in result.metrics.items()},
            "equity": equity_points(result.ts_ms, result.equity),
        }
    except MemoryError:
        return _MEMORY_EXIT
    except ValueError as exc:
        sys.stdout.write(json.dumps({"invalid": str(exc)}))
        return _INVALID_EXIT
    sys.stdout.write(json.dumps(answer))
    return 0


def backtest_in_child(
    *,
    strategy: str,
    ts: np.ndarray,
    close: np.ndarray,
    options: BacktestOptions,
    cpu_seconds: int,
    memory_mb: int,
    heartbeat: Callable[[], None],
    heartbeat_seconds: float,
) -> ChildAnswer:
    """Metrics and thinned equity of `analytics.backtest.backtest(strategy, ts, close,
    **options)`, computed in a child under the limits. ValueError for a request the library
    refuses; BacktestLimitExceeded when the child runs out of budget or dies."""
    header = {"strategy": strategy, "bars": int(ts.size), **options}
    payload = (
        json.dumps(header).encode()
        + b"\n"
        + np.ascontiguousarray(ts, dtype=np.int64).tobytes()
        + np.ascontiguousarray(close, dtype=np.float64).tobytes()
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
        [sys.executable, "-m", "analytics.backtest_process", str(cpu_seconds), str(memory_mb)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
    )
    # CPU time can only run out as fast as the clock: a child that is sleeping or starved
    # still ends within a few times its budget.
    deadline = time.monotonic() + 3 * cpu_seconds + 30
    data: bytes | None = payload
    while True:
        try:
            out, err = proc.communicate(data, timeout=heartbeat_seconds)
            break
        except subprocess.TimeoutExpired:
            data = None
            heartbeat()
            if time.monotonic() > deadline:
                proc.kill()
                proc.communicate()
                raise BacktestLimitExceeded(
                    f"The job ran longer than its time limit ({cpu_seconds} s of CPU)."
                ) from None
    code = proc.returncode
    if code == 0:
        answer: ChildAnswer = json.loads(out)
        return answer
    if code == _INVALID_EXIT:
        raise ValueError(json.loads(out)["invalid"])
    if code == _MEMORY_EXIT:
        raise BacktestLimitExceeded(f"The job needed more than its {memory_mb} MB of memory.")
    if code == -signal.SIGXCPU:
        raise BacktestLimitExceeded(f"The job used more than its {cpu_seconds} s of CPU time.")
    if code == -signal.SIGKILL:
        raise BacktestLimitExceeded(
            f"The job was stopped at its limits ({cpu_seconds} s of CPU, {memory_mb} MB)."
        )
    logger.error("backtest child exited with %s: %s", code, err.decode(errors="replace")[-2000:])
    raise BacktestLimitExceeded("The job's process stopped unexpectedly.")


if __name__ == "__main__":
    sys.exit(_child(int(sys.argv[1]), int(sys.argv[2])))
