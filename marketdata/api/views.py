"""Market-data REST endpoints (docs/api.md): exchanges, instruments, ticker, trades, candles, book.

Views are thin: parse the query with the serializers in params.py, check the plan's
history depth, call a selector, shape rows. Rows are shaped by plain functions rather
than serializers because a page holds thousands of them and this is the hot path.
Market data is global, but every endpoint still requires an authenticated caller with
an organization (OrganizationAPIView): the plan, and later the rate limit, hang off it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.utils.encoders import JSONEncoder

from accounts.api.base import OrganizationAPIView
from billing.gates import (
    DELAY_HEADER,
    book_depth_allowed,
    complete_before,
    history_guard,
    realtime_cutoff_ms,
)
from marketdata import selectors
from marketdata.api import schema
from marketdata.api.params import (
    BOOK_DEFAULT_DEPTH,
    BookParams,
    CandlesParams,
    InstrumentsParams,
    TradesParams,
    cursor_encode,
)
from marketdata.api.renderers import CSVRenderer
from marketdata.candle_cache import CandlePage, candle_page_cached
from marketdata.candles import INTERVALS_MS
from marketdata.consolidated import consolidated_pairs, consolidated_read
from marketdata.health import feed_health
from marketdata.models import Instrument
from quantsaas.cache import LocalCache
from quantsaas.timeutil import now_ms

DEFAULT_TRADES_WINDOW_MS = 3_600_000  # without `start`, trades of the last hour


def _number(value: float | str | None) -> float | None:
    return None if value is None else float(value)


class FastJSONRenderer(JSONRenderer):
    """DRF's compact JSON, written by orjson.

    A page holds thousands of rows, and the standard library's encoder was the largest
    cost of the candles endpoint. Anything orjson does not know natively (Decimal,
    datetimes, lazy strings) goes through DRF's encoder, so values keep DRF's format.
    """

    _fallback = JSONEncoder()

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        return orjson.dumps(
            data, default=self._fallback.default, option=orjson.OPT_PASSTHROUGH_DATETIME
        )


_validated_params = LocalCache(seconds=300, max_entries=10_000)


class MarketDataView(OrganizationAPIView):
    renderer_classes = [FastJSONRenderer, CSVRenderer]
    _cutoff: tuple[int | None, int] | None = None  # (cutoff ms, delay s), once per request

    def realtime_cutoff(self, now: int | None = None) -> int | None:
        """The instant this caller's answer must end at (delay.py), or None for real time.

        Resolved once per request so every part of one answer shares the same cutoff.
        """
        if self._cutoff is None:
            now = now_ms() if now is None else now
            cutoff = realtime_cutoff_ms(self.organization, now_ms=now)
            self._cutoff = (cutoff, 0 if cutoff is None else (now - cutoff) // 1000)
        return self._cutoff[0]

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        # Errors always answer in the one JSON error shape, even to a CSV request, and so
        # does OPTIONS: its metadata is not a table (and has none of the CSV columns).
        csv_unfit = response.status_code >= 400 or request.method == "OPTIONS"
        if csv_unfit and isinstance(getattr(request, "accepted_renderer", None), CSVRenderer):
            request.accepted_renderer = FastJSONRenderer()
            request.accepted_media_type = FastJSONRenderer.media_type
        response = super().finalize_response(request, response, *args, **kwargs)
        if self._cutoff is not None and self._cutoff[0] is not None:
            response[DELAY_HEADER] = str(self._cutoff[1])  # a delayed answer says so
        next_url = response.data.get("next") if isinstance(response.data, dict) else None
        if next_url:
            response["Link"] = f'<{next_url}>; rel="next"'  # how CSV clients find page 2
        return response

    def params(
        self, serializer_class: type[Serializer[dict[str, Any]]], request: Request
    ) -> dict[str, Any]:
        # Validated once per distinct query: charts and pollers repeat theirs, and a DRF
        # serializer costs more than the rest of a cached candle request.
        key = (
            serializer_class,
            tuple(sorted((k, tuple(v)) for k, v in request.query_params.lists())),
        )
        validated = _validated_params.get(key)
        if validated is None:
            serializer = serializer_class(data=request.query_params)
            serializer.is_valid(raise_exception=True)
            validated = serializer.validated_data
            _validated_params.set(key, validated)
        return dict(validated)

    def book_depth(self, request: Request) -> int:
        """The levels a side to answer: asked for and within the plan (billing.gates)."""
        return book_depth_allowed(
            organization=self.organization,
            depth=self.params(BookParams, request).get("depth"),
            default=BOOK_DEFAULT_DEPTH,
        )

    def instrument(self, exchange: str, symbol: str) -> Instrument:
        instrument = selectors.instrument_get(exchange_id=exchange, symbol=symbol)
        if instrument is not None:
            return instrument
        if selectors.exchange_get(exchange_id=exchange) is None:
            raise NotFound(f"Unknown exchange '{exchange}'.")
        raise NotFound(f"Unknown symbol '{symbol}' on {exchange}.")

    def next_url(self, request: Request, **changes: Any) -> str:
        query = request.query_params.copy()
        for key, value in changes.items():
            query[key] = str(value)
        return request.build_absolute_uri(request.path) + "?" + query.urlencode()


class ExchangesView(MarketDataView):
    @extend_schema(responses=schema.ExchangeList, summary="Exchanges and their feed status")
    def get(self, request: Request) -> Response:
        data = [
            {
                "id": exchange.id,
                "name": exchange.name,
                "enabled": exchange.enabled,
                "status": feed_health(exchange_id=exchange.id),
            }
            for exchange in selectors.exchanges_list()
        ]
        return Response({"data": data, "next": None})


def _instrument_json(instrument: Instrument) -> dict[str, Any]:
    return {
        "exchange": instrument.exchange_id,
        "symbol": instrument.symbol,
        "ccxt_symbol": instrument.ccxt_symbol,
        "base": instrument.base,
        "quote": instrument.quote,
        "price_precision": float(instrument.price_precision),
        "size_precision": float(instrument.size_precision),
        "active": instrument.active,
    }


class InstrumentsView(MarketDataView):
    @extend_schema(
        parameters=[InstrumentsParams], responses=schema.InstrumentList, summary="Instruments"
    )
    def get(self, request: Request) -> Response:
        params = self.params(InstrumentsParams, request)
        exchange = None
        if "exchange" in params:
            exchange = selectors.exchange_get(exchange_id=params["exchange"])
            if exchange is None:
                raise NotFound(f"Unknown exchange '{params['exchange']}'.")
        data = [_instrument_json(i) for i in selectors.instruments_list(exchange=exchange)]
        return Response({"data": data, "next": None})


class TickerView(MarketDataView):
    @extend_schema(responses=schema.TickerOut, summary="Last price, best bid/ask, 24 h stats")
    def get(self, request: Request, exchange: str, symbol: str) -> Response:
        instrument = self.instrument(exchange, symbol)
        cutoff = self.realtime_cutoff()
        if cutoff is None:
            ticker = selectors.ticker_latest(instrument=instrument)
            if ticker is None:
                raise NotFound("No ticker has been received for this market yet.")
        else:
            # Rebuilt from stored data before the cutoff: the stored and live tickers are
            # real-time state, and even their 24 h stats would leak the last 15 minutes.
            ticker = selectors.ticker_at(instrument=instrument, at_ms=cutoff)
            if ticker is None:
                raise NotFound("Your plan's data is delayed and no trade precedes the delay.")
        change = None if ticker.open_24h is None else ticker.last - ticker.open_24h
        return Response(
            {
                "exchange": instrument.exchange_id,
                "symbol": instrument.symbol,
                "ts": ticker.ts,
                "last": ticker.last,
                "bid": ticker.bid,
                "ask": ticker.ask,
                "bid_size": ticker.bid_size,
                "ask_size": ticker.ask_size,
                "high_24h": ticker.high_24h,
                "low_24h": ticker.low_24h,
                "volume_24h": ticker.volume_24h,
                "quote_volume_24h": ticker.quote_volume_24h,
                "change_24h": change,
                "change_pct_24h": (
                    None if not ticker.open_24h or change is None else change / ticker.open_24h
                ),
            }
        )


class TradesView(MarketDataView):
    @extend_schema(
        parameters=[TradesParams], responses=schema.TradeList, summary="Trades, oldest first"
    )
    def get(self, request: Request, exchange: str, symbol: str) -> Response:
        instrument = self.instrument(exchange, symbol)
        params = self.params(TradesParams, request)
        now = now_ms()
        end = min(params.get("end", now), now)  # no trade exists after now
        cutoff = self.realtime_cutoff(now)
        if cutoff is not None:
            end = min(end, cutoff)  # a delayed plan's tape ends at the cutoff
        start = params.get("start")
        if start is None:
            boundary = history_guard(organization=self.organization, start_ms=end, now_ms=now)
            start = max(end - DEFAULT_TRADES_WINDOW_MS, boundary or 0)
        else:
            history_guard(organization=self.organization, start_ms=start, now_ms=now)
        limit = params["limit"]
        rows = selectors.trades_between(
            instrument=instrument,
            start_ms=start,
            end_ms=end,
            limit=limit + 1,
            after=params.get("cursor"),
        )
        next_url = None
        if len(rows) > limit:
            rows = rows[:limit]
            row_id, _, ts_us, *_ = rows[-1]
            next_url = self.next_url(request, cursor=cursor_encode(ts_us, row_id))
        data = [
            {"id": trade_id, "ts": ts_us // 1000, "price": price, "size": size, "side": side}
            for _, trade_id, ts_us, price, size, side in rows
        ]
        return Response({"data": data, "next": next_url})


class CandlesView(MarketDataView):
    @extend_schema(
        parameters=[CandlesParams],
        responses=schema.CandleList,
        summary="OHLCV candles, oldest first, UTC-aligned",
    )
    def get(self, request: Request, exchange: str, symbol: str) -> Response:
        instrument = self.instrument(exchange, symbol)
        params = self.params(CandlesParams, request)
        interval, limit = params["interval"], params["limit"]
        interval_ms = INTERVALS_MS[interval]
        now = now_ms()
        # Nothing exists after now; an `end` near year 9999 would otherwise be rounded up
        # to a bucket boundary no datetime can represent.
        end = min(params.get("end", now), now)
        cutoff = self.realtime_cutoff(now)
        if cutoff is not None:
            end = min(end, cutoff)
        end += -end % interval_ms  # whole buckets: the one containing `end` is included
        # What the buckets are built from ends at `known`: now, or for a delayed plan the
        # last whole minute before the cutoff (the minute in progress there holds later
        # trades). The bucket containing the cutoff is then partial, hence not final.
        known = now if cutoff is None else complete_before(cutoff)
        start = params.get("start")
        if start is None:
            # Without `start`: the latest `limit` buckets, as a chart wants them. The guard
            # refuses a window wholly beyond the plan and returns its boundary (one lookup).
            boundary = history_guard(organization=self.organization, start_ms=end - 1, now_ms=now)
            start = max(end - limit * interval_ms, boundary or 0)
        else:
            history_guard(organization=self.organization, start_ms=start, now_ms=now)
        start -= start % interval_ms
        query_end = end if cutoff is None else min(end, known)
        page = candle_page_cached(
            instrument_id=instrument.pk,
            # Finality moves with the clock: the page depends on the bucket `known` is in.
            query=(interval, start, query_end, limit, known - known % interval_ms),
            build=lambda: _candle_page_build(
                instrument, interval, start=start, end=query_end, limit=limit, known=known
            ),
        )
        next_url = None
        if page.more_from is not None:
            next_url = self.next_url(request, start=page.more_from)
        if isinstance(request.accepted_renderer, FastJSONRenderer):
            data = orjson.Fragment(page.json)  # rendered once per page, not per request
        else:
            data = orjson.loads(page.json)
        return Response({"data": data, "next": next_url})


def _candle_page_build(
    instrument: Instrument, interval: str, *, start: int, end: int, limit: int, known: int
) -> CandlePage:
    interval_ms = INTERVALS_MS[interval]
    rows = selectors.candles_between(
        instrument=instrument, interval=interval, start_ms=start, end_ms=end, limit=limit + 1
    )
    more_from = None
    if len(rows) > limit:
        rows = rows[:limit]
        more_from = rows[-1][0] + interval_ms
    data = [
        {
            "ts": ts,
            "open": o,
            "high": h,
            "low": low,
            "close": c,
            "volume": v,
            "buy_volume": bv,
            "trades": n,
            # The bucket still in progress (or with a minute the feed has not closed)
            # is not final: its values will change.
            "final": final and ts + interval_ms <= known,
        }
        for ts, o, h, low, c, v, bv, n, final in rows
    ]
    return CandlePage(
        json=orjson.dumps(data, default=FastJSONRenderer._fallback.default), more_from=more_from
    )


class BookView(MarketDataView):
    @extend_schema(parameters=[BookParams], responses=schema.BookOut, summary="Latest L2 book")
    def get(self, request: Request, exchange: str, symbol: str) -> Response:
        instrument = self.instrument(exchange, symbol)
        depth = self.book_depth(request)
        cutoff = self.realtime_cutoff()
        if cutoff is None:
            book = selectors.book_latest(instrument=instrument)
            if book is None:
                raise NotFound("No order book has been received for this market yet.")
        else:
            book = selectors.book_at(instrument=instrument, at_ms=cutoff)
            if book is None:
                raise NotFound(
                    "Your plan's data is delayed and no order book was stored before the delay."
                )
        return Response(
            {
                "exchange": instrument.exchange_id,
                "symbol": instrument.symbol,
                "ts": book.ts,
                "bids": [[_number(p), _number(s)] for p, s in book.bids[:depth]],
                "asks": [[_number(p), _number(s)] for p, s in book.asks[:depth]],
            }
        )

    def csv_rows(self, data: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
        rows = [["bid", p, s] for p, s in data["bids"]] + [["ask", p, s] for p, s in data["asks"]]
        return ["side", "price", "size"], rows


class ConsolidatedView(MarketDataView):
    """One pair across venues (marketdata/consolidated.py has the rules)."""

    kind = ""

    def consolidated(self, pair: str) -> dict[str, Any]:
        pair = pair.upper()
        if pair not in consolidated_pairs(selectors.instrument_pairs_active()):
            raise NotFound(f"Unknown consolidated pair '{pair}'.")
        state = consolidated_read(self.kind, pair, at_ms=self.realtime_cutoff(), now_ms=now_ms())
        if state is None:
            raise NotFound("Nothing has been consolidated for this pair yet.")
        return {"pair": pair, **state}


class ConsolidatedBboView(ConsolidatedView):
    kind = "bbo"

    @extend_schema(responses=schema.ConsolidatedBboOut, summary="Best bid and ask across venues")
    def get(self, request: Request, pair: str) -> Response:
        state = self.consolidated(pair)
        fields = schema.ConsolidatedBboOut().fields
        # keys(): drf-stubs has a BindingDict iterate over its fields, not their names
        return Response({k: state.get(k) for k in fields.keys()})  # noqa: SIM118


class ConsolidatedBookView(ConsolidatedView):
    kind = "book"

    @extend_schema(
        parameters=[BookParams],
        responses=schema.ConsolidatedBookOut,
        summary="Merged L2 book across venues, each level with every venue's size",
    )
    def get(self, request: Request, pair: str) -> Response:
        depth = self.book_depth(request)
        state = self.consolidated(pair)
        return Response(
            {
                "pair": state["pair"],
                "ts": state.get("ts"),
                "bids": (state.get("bids") or [])[:depth],
                "asks": (state.get("asks") or [])[:depth],
                "venues": state.get("venues") or [],
            }
        )

    def csv_rows(self, data: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
        venues = data["venues"]
        rows = [
            [side, level[0], level[1], *[level[2].get(v, 0) for v in venues]]
            for side, key in (("bid", "bids"), ("ask", "asks"))
            for level in data[key]
        ]
        return ["side", "price", "size", *venues], rows
