"""GET /api/v1/analytics/{exchange}/{symbol}/ofi, /vpin and /volatility.

- ofi: the stored per-second OFI of the live feed (what the ``ofi`` channel sent), summed
  per requested interval.
- vpin: the stored buckets of the live feed (what the ``vpin`` channel sent) when the
  request asks for the live parameters (the default); any other ``bucket_volume`` or
  ``window`` is computed on demand from stored trades with the batch definition, whose sigma
  is over the requested range. ``source`` says which ("stream" or "trades").
- volatility: a rolling estimator over candles of the requested interval.

Market data is global; the plan gates analytics (403 plan_required) and history depth.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from analytics import selectors
from analytics.api.access import analytics_guard
from analytics.volatility import ESTIMATORS, realized_volatility
from analytics.vpin import TooManyBuckets, buckets_implied
from analytics.vpin import vpin as vpin_batch
from billing.gates import complete_before, history_boundary, history_guard
from marketdata import selectors as md_selectors
from marketdata.api.params import WindowParams
from marketdata.api.views import MarketDataView
from marketdata.candles import INTERVALS_MS
from marketdata.models import Instrument
from quantsaas.api.schema import error_response
from quantsaas.timeutil import now_ms

OFI_INTERVALS_MS = {
    "1s": 1_000,
    "5s": 5_000,
    "10s": 10_000,
    "30s": 30_000,
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
}
VPIN_DEFAULT_RANGE_MS = 86_400_000
VPIN_MAX_TRADES = 1_000_000
VPIN_BAR_MS = 60_000
# The longest look-back of one volatility estimate: a year of daily bars (docs/decisions.md).
VOLATILITY_MAX_LOOKBACK_DAYS = 366

ERRORS = {
    400: error_response("Invalid parameters."),
    403: error_response("plan_required: no analytics on this plan, or history too old."),
    404: error_response("Unknown exchange or symbol."),
}


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


class AnalyticsView(MarketDataView):
    def window(self, params: dict[str, Any], *, step_ms: int, limit: int) -> tuple[int, int]:
        """[start, end) of the request, with the plan's history depth enforced; without
        `start`, the latest `limit` steps before `end`. For a delayed plan `end` is at
        most the cutoff (billing/gates.py): analytics of the last minutes would
        leak the real-time data they are computed from."""
        now = now_ms()
        end = min(params.get("end", now), now)  # nothing exists later, nor near year 9999
        cutoff = self.realtime_cutoff(now)
        if cutoff is not None:
            end = min(end, cutoff)
        start = params.get("start")
        if start is None:
            boundary = history_boundary(organization=self.organization, now_ms=now)
            history_guard(organization=self.organization, start_ms=end - 1, now_ms=now)
            start = max(end - limit * step_ms, boundary or 0)
        else:
            history_guard(organization=self.organization, start_ms=start, now_ms=now)
        return start, end


# --- OFI ----------------------------------------------------------------------------------
class OfiParams(WindowParams):
    interval = serializers.ChoiceField(choices=list(OFI_INTERVALS_MS), default="1s")
    limit = serializers.IntegerField(min_value=1, max_value=10_000, default=1_000)


class OfiRow(serializers.Serializer[dict[str, Any]]):
    ts = serializers.IntegerField(help_text="Interval start, ms, epoch-aligned.")
    ofi = serializers.FloatField(help_text="Cont-Kukanov-Stoikov OFI, base units.")
    updates = serializers.IntegerField(help_text="Book updates in the interval.")
    interval_ms = serializers.IntegerField()


class OfiList(serializers.Serializer[dict[str, Any]]):
    # DRF's metaclass moves declared fields off the class: this does not shadow .data.
    data = OfiRow(many=True)  # type: ignore[assignment]
    next = serializers.URLField(allow_null=True)


class OfiView(AnalyticsView):
    @extend_schema(
        parameters=[OfiParams],
        responses={200: OfiList, **ERRORS},
        summary="Order-flow imbalance per interval, from the live feed's stored seconds",
    )
    def get(self, request: Request, exchange: str, symbol: str) -> Response:
        analytics_guard(organization=self.organization)
        instrument = self.instrument(exchange, symbol)
        params = self.params(OfiParams, request)
        interval_ms, limit = OFI_INTERVALS_MS[params["interval"]], params["limit"]
        start, end = self.window(params, step_ms=interval_ms, limit=limit)
        start -= start % interval_ms
        cutoff = self.realtime_cutoff()
        if cutoff is not None:
            end = min(end, complete_before(cutoff, unit_ms=1_000))  # whole stored seconds
        rows = selectors.ofi_between(
            instrument=instrument,
            interval_ms=interval_ms,
            start_ms=start,
            end_ms=end,
            limit=limit + 1,
        )
        next_url = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_url = self.next_url(request, start=rows[-1][0] + interval_ms)
        data = [
            {"ts": ts, "ofi": ofi, "updates": updates, "interval_ms": interval_ms}
            for ts, ofi, updates in rows
        ]
        return Response({"data": data, "next": next_url})


# --- VPIN ---------------------------------------------------------------------------------
class VpinParams(WindowParams):
    bucket_volume = serializers.FloatField(
        required=False,
        min_value=0,
        help_text="Base volume per bucket; default: the live feed's, served from storage.",
    )
    window = serializers.IntegerField(min_value=1, max_value=1_000, default=50)
    limit = serializers.IntegerField(min_value=1, max_value=10_000, default=1_000)

    def validate_bucket_volume(self, value: float) -> float:
        if not (math.isfinite(value) and value > 0):
            raise serializers.ValidationError("Must be greater than 0.")
        return value


class VpinRow(serializers.Serializer[dict[str, Any]]):
    ts = serializers.IntegerField(help_text="Last trade of the bar that completed the bucket.")
    buy_volume = serializers.FloatField()
    sell_volume = serializers.FloatField()
    vpin = serializers.FloatField(allow_null=True, help_text="Null until `window` buckets.")
    bucket_volume = serializers.FloatField()
    window = serializers.IntegerField()


class VpinList(serializers.Serializer[dict[str, Any]]):
    # DRF's metaclass moves declared fields off the class: these do not shadow the
    # serializer's .data and .source.
    data = VpinRow(many=True)  # type: ignore[assignment]
    next = serializers.URLField(allow_null=True)
    source = serializers.ChoiceField(choices=["stream", "trades"])  # type: ignore[assignment]
    bucket_volume = serializers.FloatField()
    window = serializers.IntegerField()
    bar_ms = serializers.IntegerField()


class VpinView(AnalyticsView):
    @extend_schema(
        parameters=[VpinParams],
        responses={200: VpinList, **ERRORS},
        summary="VPIN buckets (bulk volume classification over 1-minute bars)",
    )
    def get(self, request: Request, exchange: str, symbol: str) -> Response:
        analytics_guard(organization=self.organization)
        instrument = self.instrument(exchange, symbol)
        params = self.params(VpinParams, request)
        window, limit = params["window"], params["limit"]
        start, end = self.window(params, step_ms=VPIN_DEFAULT_RANGE_MS, limit=1)
        live = selectors.vpin_stored_latest_params(instrument=instrument)
        bucket_volume = params.get("bucket_volume")
        if bucket_volume is None:
            if live is None:
                raise ValidationError(
                    {"bucket_volume": "No live VPIN is stored for this market; give one."}
                )
            bucket_volume = live[0]
        if live is not None and (bucket_volume, window) == live[:2]:
            return self._stored(request, instrument, live, start, end, limit)
        return self._computed(instrument, bucket_volume, window, start, end, limit)

    def _stored(
        self,
        request: Request,
        instrument: Instrument,
        live: tuple[float, int, int],
        start: int,
        end: int,
        limit: int,
    ) -> Response:
        bucket_volume, window, bar_ms = live
        rows = selectors.vpin_stored_between(
            instrument=instrument,
            bucket_volume=bucket_volume,
            window=window,
            start_ms=start,
            end_ms=end,
            limit=limit + 1,
        )
        next_url = None
        if len(rows) > limit:
            rows = rows[:limit]
            # Buckets sharing the last timestamp all go to the next page, whole.
            last_ts = rows[-1][0]
            if rows[0][0] != last_ts:
                rows = [row for row in rows if row[0] != last_ts]
                next_url = self.next_url(request, start=last_ts)
            else:
                next_url = self.next_url(request, start=last_ts + 1)
        data = [
            {
                "ts": ts,
                "buy_volume": buy,
                "sell_volume": sell,
                "vpin": vpin,
                "bucket_volume": bucket_volume,
                "window": window,
            }
            for ts, buy, sell, vpin, _sigma in rows
        ]
        return Response(
            {
                "data": data,
                "next": next_url,
                "source": "stream",
                "bucket_volume": bucket_volume,
                "window": window,
                "bar_ms": bar_ms,
            }
        )

    def _computed(
        self,
        instrument: Instrument,
        bucket_volume: float,
        window: int,
        start: int,
        end: int,
        limit: int,
    ) -> Response:
        ts, price, size = selectors.trades_arrays(
            instrument=instrument, start_ms=start, end_ms=end, limit=VPIN_MAX_TRADES + 1
        )
        if ts.size > VPIN_MAX_TRADES:
            raise ValidationError(
                {"start": f"More than {VPIN_MAX_TRADES} trades in the range; narrow it."}
            )
        # Refused before any per-bucket array exists: the range's volume over a tiny
        # bucket_volume could imply billions of buckets (docs/decisions.md).
        buckets = buckets_implied(float(size.sum()), bucket_volume) if size.size else 0.0
        if buckets > limit:
            raise _too_many_buckets(buckets, limit)
        try:
            series = vpin_batch(
                ts, price, size, bucket_volume, window=window, bar_ms=VPIN_BAR_MS, max_buckets=limit
            )
        except TooManyBuckets as exc:
            raise _too_many_buckets(exc.buckets, limit) from None
        data = [
            {
                "ts": t,
                "buy_volume": buy,
                "sell_volume": sell,
                "vpin": _number(v),
                "bucket_volume": bucket_volume,
                "window": window,
            }
            for t, buy, sell, v in zip(
                series.ts_ms.tolist(),
                series.buy_volume.tolist(),
                series.sell_volume.tolist(),
                series.vpin.tolist(),
                strict=True,
            )
        ]
        return Response(
            {
                "data": data,
                "next": None,
                "source": "trades",
                "bucket_volume": bucket_volume,
                "window": window,
                "bar_ms": VPIN_BAR_MS,
            }
        )


def _too_many_buckets(buckets: float, limit: int) -> ValidationError:
    implied = "too many" if not math.isfinite(buckets) else f"{buckets:,.0f}"
    return ValidationError(
        {
            "bucket_volume": (
                f"The range's volume makes {implied} buckets of this size, more than "
                f"limit={limit}: raise bucket_volume or limit, or narrow the range."
            )
        }
    )


# --- volatility ---------------------------------------------------------------------------
class VolatilityParams(WindowParams):
    estimator = serializers.ChoiceField(choices=list(ESTIMATORS), default="close_to_close")
    interval = serializers.ChoiceField(choices=list(INTERVALS_MS), default="1h")
    window = serializers.IntegerField(
        min_value=2,
        max_value=1_000,
        default=24,
        help_text=(
            f"Bars per estimate; window x interval at most {VOLATILITY_MAX_LOOKBACK_DAYS} days."
        ),
    )
    limit = serializers.IntegerField(min_value=1, max_value=5_000, default=500)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        lookback_ms = attrs["window"] * INTERVALS_MS[attrs["interval"]]
        if lookback_ms > VOLATILITY_MAX_LOOKBACK_DAYS * 86_400_000:
            raise serializers.ValidationError(
                {
                    "window": (
                        f"window x interval reaches back {lookback_ms / 86_400_000:g} days; "
                        f"at most {VOLATILITY_MAX_LOOKBACK_DAYS}. Use fewer bars or a "
                        "shorter interval."
                    )
                }
            )
        return attrs


class VolatilityRow(serializers.Serializer[dict[str, Any]]):
    ts = serializers.IntegerField(help_text="Open time of the bar that ends the window.")
    volatility = serializers.FloatField(
        allow_null=True, help_text="Annualised (24/7), decimal: 0.5 = 50 %."
    )


class VolatilityList(serializers.Serializer[dict[str, Any]]):
    # DRF's metaclass moves declared fields off the class: this does not shadow .data.
    data = VolatilityRow(many=True)  # type: ignore[assignment]
    next = serializers.URLField(allow_null=True)
    estimator = serializers.CharField()
    interval = serializers.CharField()
    window = serializers.IntegerField()


class VolatilityView(AnalyticsView):
    @extend_schema(
        parameters=[VolatilityParams],
        responses={200: VolatilityList, **ERRORS},
        summary="Rolling realised volatility over candles, annualised for 24/7 trading",
    )
    def get(self, request: Request, exchange: str, symbol: str) -> Response:
        analytics_guard(organization=self.organization)
        instrument = self.instrument(exchange, symbol)
        params = self.params(VolatilityParams, request)
        interval, window, limit = params["interval"], params["window"], params["limit"]
        interval_ms = INTERVALS_MS[interval]
        start, end = self.window(params, step_ms=interval_ms, limit=limit)
        start -= start % interval_ms
        end += -end % interval_ms
        cutoff = self.realtime_cutoff()
        if cutoff is not None:
            end = min(end, complete_before(cutoff))  # whole stored minutes
        # The bars before `start` that the first window needs (one more for the estimators
        # that use the previous close); they are read but not answered, and never from
        # before the plan's history depth: there the first windows stay null.
        lead = (window + 1) * interval_ms
        floor = history_boundary(organization=self.organization, now_ms=now_ms()) or 0
        floor += -floor % interval_ms  # whole bars only
        rows = md_selectors.candles_between(
            instrument=instrument,
            interval=interval,
            start_ms=max(start - lead, floor),
            end_ms=end,
            limit=limit + window + 2,
        )
        data: list[dict[str, Any]] = []
        next_url = None
        if rows:
            columns = np.array([row[:5] for row in rows], dtype=float)
            values = realized_volatility(
                params["estimator"],
                columns[:, 1],
                columns[:, 2],
                columns[:, 3],
                columns[:, 4],
                interval_ms=interval_ms,
                window=window,
            )
            data = [
                {"ts": int(ts), "volatility": _number(v)}
                for ts, v in zip(
                    columns[:, 0].tolist(), np.atleast_1d(values).tolist(), strict=True
                )
                if ts >= start
            ]
            if len(data) > limit:
                data = data[:limit]
                next_url = self.next_url(request, start=data[-1]["ts"] + interval_ms)
        return Response(
            {
                "data": data,
                "next": next_url,
                "estimator": params["estimator"],
                "interval": interval,
                "window": window,
            }
        )
