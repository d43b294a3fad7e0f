"""``quantsaas``: the API from a shell.

The key comes only from ``QUANTSAAS_API_KEY`` (never a flag: flags end up in
shell history and process lists), the site from ``QUANTSAAS_URL``. Lists print
JSON lines, or CSV with ``--csv``; single answers print as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from quantsaas_client._time import duration_seconds
from quantsaas_client._version import __version__
from quantsaas_client.errors import QuantSaaSError
from quantsaas_client.rest import Client
from quantsaas_client.stream.events import Snapshot, Update

YEAR_SECONDS = 365 * 86400


def _expiry(text: str) -> float:
    """Years, or a duration such as ``30d`` or ``2w`` (calendar time, 365-day years)."""
    try:
        return float(text)
    except ValueError:
        return duration_seconds(text) / YEAR_SECONDS


def _param(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def write_records(records: Iterable[dict[str, Any]], out: TextIO, *, as_csv: bool) -> int:
    count = 0
    writer: csv.DictWriter[str] | None = None
    for record in records:
        if as_csv:
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=list(record), extrasaction="ignore")
                writer.writeheader()
            writer.writerow(
                {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in record.items()}
            )
        else:
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
        count += 1
    return count


def _print(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, indent=2) + "\n")


def _add_window(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="how far back, e.g. 15m, 1h, 7d (same as --start)")
    parser.add_argument("--start", help="ms since the epoch or ISO 8601")
    parser.add_argument("--end", help="ms since the epoch or ISO 8601 (default: now)")
    parser.add_argument("--limit", type=int, help="stop after this many records")
    parser.add_argument("--csv", action="store_true", help="CSV with a header row")


def _add_option(parser: argparse.ArgumentParser, *, last: str, help_: str) -> None:
    parser.add_argument("type", choices=["call", "put"])
    parser.add_argument("--spot", type=float, required=True)
    parser.add_argument("--strike", type=float, required=True)
    parser.add_argument(
        "--expiry", type=_expiry, required=True, help="years (0.5) or a duration (30d)"
    )
    parser.add_argument(f"--{last}", type=float, required=True, help=help_)
    parser.add_argument("--rate", type=float, default=0.0, help="0.05 = 5%%")
    parser.add_argument("--dividend-yield", type=float, default=0.0)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="quantsaas",
        description="QuantSaaS from the command line. Key: QUANTSAAS_API_KEY; site: QUANTSAAS_URL.",
    )
    root.add_argument("--version", action="version", version=f"quantsaas-client {__version__}")
    commands = root.add_subparsers(dest="command", required=True)

    commands.add_parser("exchanges", help="exchanges and their feed status")
    instruments = commands.add_parser("instruments", help="instruments")
    instruments.add_argument("--exchange")
    instruments.add_argument("--csv", action="store_true")
    for name in ("ticker", "book"):
        command = commands.add_parser(name, help=f"the latest {name}")
        command.add_argument("exchange")
        command.add_argument("symbol", help="BASE-QUOTE, e.g. BTC-USDT")
        if name == "book":
            command.add_argument("--depth", type=int)

    trades = commands.add_parser("trades", help="trades, oldest first, every page")
    trades.add_argument("exchange")
    trades.add_argument("symbol")
    _add_window(trades)
    candles = commands.add_parser("candles", help="OHLCV candles")
    candles.add_argument("exchange")
    candles.add_argument("symbol")
    candles.add_argument("--interval", default="1m", choices=["1m", "5m", "15m", "1h", "4h", "1d"])
    _add_window(candles)
    for name in ("ofi", "vpin", "volatility"):
        series = commands.add_parser(name, help=f"the {name} series")
        series.add_argument("exchange")
        series.add_argument("symbol")
        _add_window(series)

    price = commands.add_parser("price", help="Black-Scholes-Merton price and greeks")
    _add_option(price, last="vol", help_="volatility, 0.2 = 20%%")
    iv = commands.add_parser("iv", help="implied volatility from a price")
    _add_option(iv, last="price", help_="the option's price")

    backtest = commands.add_parser("backtest", help="run a backtest and wait for its result")
    backtest.add_argument("exchange")
    backtest.add_argument("symbol")
    backtest.add_argument(
        "--strategy", required=True, choices=["sma_crossover", "momentum", "mean_reversion"]
    )
    backtest.add_argument("--interval", default="1h")
    backtest.add_argument("--since")
    backtest.add_argument("--start")
    backtest.add_argument("--end")
    backtest.add_argument("--param", type=_param, action="append", default=[], help="name=value")
    backtest.add_argument("--no-wait", action="store_true", help="print the queued job and exit")

    commands.add_parser("usage", help="this period's usage and the plan's limits")

    stream = commands.add_parser("stream", help="live messages as JSON lines")
    stream.add_argument("channels", nargs="+", help="e.g. trades.sim.BTC-USD")
    stream.add_argument("--count", type=int, help="stop after this many data messages")
    stream.add_argument("--seconds", type=float, help="stop after this long")
    return root


def run(
    argv: Sequence[str] | None = None, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    args = parser().parse_args(argv)
    try:
        with Client() as client:
            return _dispatch(client, args, out, err)
    except QuantSaaSError as exc:
        err.write(f"quantsaas: {exc}\n")
        return 1
    except ValueError as exc:
        err.write(f"quantsaas: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    command = args.command
    if command == "stream":
        return asyncio.run(_stream(client, args, out, err))
    if command == "exchanges":
        write_records(client.exchanges(), out, as_csv=False)
    elif command == "instruments":
        write_records(client.instruments(args.exchange), out, as_csv=args.csv)
    elif command == "ticker":
        _print(client.ticker(args.exchange, args.symbol), out)
    elif command == "book":
        _print(client.book(args.exchange, args.symbol, depth=args.depth), out)
    elif command in ("trades", "candles", "ofi", "vpin", "volatility"):
        window = {"start": args.start or args.since, "end": args.end}
        if command == "trades":
            records = client.trades(args.exchange, args.symbol, max_records=args.limit, **window)
        elif command == "candles":
            records = client.candles(
                args.exchange,
                args.symbol,
                interval=args.interval,
                max_records=args.limit,
                **window,
            )
        else:
            records = getattr(client, command)(args.exchange, args.symbol, **window)
        write_records(records, out, as_csv=args.csv)
    elif command == "price":
        _print(
            client.option_price(
                args.type,
                spot=args.spot,
                strike=args.strike,
                expiry=args.expiry,
                volatility=args.vol,
                rate=args.rate,
                dividend_yield=args.dividend_yield,
            ),
            out,
        )
    elif command == "iv":
        row = client.implied_volatilities(
            [
                {
                    "type": args.type,
                    "spot": args.spot,
                    "strike": args.strike,
                    "expiry": args.expiry,
                    "price": args.price,
                    "rate": args.rate,
                    "dividend_yield": args.dividend_yield,
                }
            ]
        )[0]
        _print(row, out)
    elif command == "backtest":
        return _backtest(client, args, out, err)
    elif command == "usage":
        _print(client.usage(), out)
    return 0


def _backtest(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    start = args.start or args.since
    if start is None:
        raise ValueError("backtest needs --start or --since")
    submitted = client.submit_backtest(
        exchange=args.exchange,
        symbol=args.symbol,
        strategy=args.strategy,
        interval=args.interval,
        start=start,
        end=args.end,
        params=dict(args.param),
    )
    if args.no_wait:
        _print(submitted.raw, out)
        return 0

    def progress(backtest: Any) -> None:
        err.write(f"\rbacktest {backtest.id}: {backtest.status} {backtest.progress:.0%}")
        err.flush()

    done = client.wait_backtest(submitted, on_progress=progress)
    err.write("\n")
    _print(done.raw, out)
    return 0


async def _stream(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    received = 0
    async with client.stream(args.channels) as stream:
        iterator = stream.events()
        try:
            while True:
                timeout = None if deadline is None else deadline - time.monotonic()
                if timeout is not None and timeout <= 0:
                    break
                try:
                    event = await asyncio.wait_for(iterator.__anext__(), timeout)
                except (asyncio.TimeoutError, StopAsyncIteration):
                    break
                if isinstance(event, Update | Snapshot):
                    record: dict[str, Any] = {
                        "type": "snapshot" if isinstance(event, Snapshot) else "update"
                    }
                    record.update(channel=event.channel, seq=event.seq, data=event.data)
                    out.write(json.dumps(record, separators=(",", ":")) + "\n")
                    out.flush()
                    received += 1
                    if args.count is not None and received >= args.count:
                        break
                else:
                    name = type(event).__name__
                    err.write(f"{name} {json.dumps(dataclasses.asdict(event), default=str)}\n")
        finally:
            await iterator.aclose()
    return 0


def main() -> None:
    sys.exit(run())
