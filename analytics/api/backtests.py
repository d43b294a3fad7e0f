"""POST /api/v1/backtests (202 with the queued job), GET /api/v1/backtests[/{id}].

Jobs are tenant data: every read goes through a selector that takes the caller's
organization, so another organization's job id answers 404 like a missing one. Any
member may run a backtest (it changes nothing of the organization's but its allowance);
each accepted submission leaves an audit row naming the user or API key.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import OrganizationAPIView
from accounts.models import ApiKeyScope, User
from accounts.services.audit import client_ip
from analytics import selectors
from analytics.backtest import STRATEGIES
from analytics.models import Backtest
from analytics.services import (
    BacktestNotAllowed,
    BacktestTooLarge,
    backtest_submit,
    backtests_abandoned_fail,
)
from billing.gates import complete_before, history_guard, realtime_cutoff_ms
from marketdata import selectors as md_selectors
from marketdata.candles import INTERVALS_MS
from quantsaas.api.errors import PlanRequired
from quantsaas.api.fields import TimestampField, TimestampMsField
from quantsaas.api.schema import error_response
from quantsaas.timeutil import now_ms


class SmaCrossoverParams(serializers.Serializer[dict[str, Any]]):
    fast = serializers.IntegerField(min_value=1, max_value=10_000, default=10)
    slow = serializers.IntegerField(min_value=2, max_value=10_000, default=30)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["fast"] >= attrs["slow"]:
            raise serializers.ValidationError({"slow": "slow must be greater than fast."})
        return attrs


class MomentumParams(serializers.Serializer[dict[str, Any]]):
    lookback = serializers.IntegerField(min_value=1, max_value=10_000, default=20)


class MeanReversionParams(serializers.Serializer[dict[str, Any]]):
    window = serializers.IntegerField(min_value=2, max_value=10_000, default=20)
    entry_z = serializers.FloatField(min_value=0, max_value=100, default=2.0)
    exit_z = serializers.FloatField(min_value=0, max_value=100, default=0.5)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["exit_z"] >= attrs["entry_z"]:
            raise serializers.ValidationError({"exit_z": "exit_z must be below entry_z."})
        return attrs


STRATEGY_PARAMS: dict[str, type[serializers.Serializer[dict[str, Any]]]] = {
    "sma_crossover": SmaCrossoverParams,
    "momentum": MomentumParams,
    "mean_reversion": MeanReversionParams,
}
assert set(STRATEGY_PARAMS) == set(STRATEGIES)


class BacktestIn(serializers.Serializer[dict[str, Any]]):
    exchange = serializers.CharField(max_length=32)
    symbol = serializers.CharField(max_length=32, help_text="BASE-QUOTE")
    interval = serializers.ChoiceField(choices=list(INTERVALS_MS), default="1h")
    start = TimestampField(help_text="Inclusive; ms since epoch or ISO 8601.")
    end = TimestampField(required=False, help_text="Exclusive; default now.")
    strategy = serializers.ChoiceField(choices=list(STRATEGIES))
    params = serializers.DictField(
        required=False,
        default=dict,
        help_text="sma_crossover: fast, slow; momentum: lookback; "
        "mean_reversion: window, entry_z, exit_z (bars and z-scores).",
    )
    fee_bp = serializers.FloatField(min_value=0, max_value=1_000, default=0.0)
    slippage_bp = serializers.FloatField(min_value=0, max_value=1_000, default=0.0)
    allow_short = serializers.BooleanField(default=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs.setdefault("end", now_ms())
        if attrs["start"] >= attrs["end"]:
            raise serializers.ValidationError({"end": "end must be after start."})
        strategy_params = STRATEGY_PARAMS[attrs["strategy"]](data=attrs.get("params") or {})
        if not strategy_params.is_valid():
            raise serializers.ValidationError({"params": strategy_params.errors})
        attrs["params"] = dict(strategy_params.validated_data)
        instrument = md_selectors.instrument_get(
            exchange_id=attrs["exchange"], symbol=attrs["symbol"]
        )
        if instrument is None:
            raise serializers.ValidationError({"symbol": "Unknown market on this exchange."})
        attrs["symbol"] = instrument.symbol
        return attrs


class BacktestOut(serializers.Serializer[Backtest]):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Backtest.Status.values)
    progress = serializers.FloatField(help_text="0 to 1.")
    strategy = serializers.CharField()
    params = serializers.DictField(help_text="The request as validated, defaults filled in.")
    result = serializers.DictField(
        allow_null=True,
        help_text="When succeeded: metrics, start, end and equity ([ts, equity] points, "
        "at most 2,000, equity 1.0 at the start).",
    )
    error = serializers.CharField(allow_null=True)
    created_at = TimestampMsField()
    started_at = TimestampMsField(allow_null=True, help_text="Null while queued.")
    finished_at = TimestampMsField(allow_null=True, help_text="Null until it ends.")
    url = serializers.SerializerMethodField()

    def get_url(self, job: Backtest) -> str:
        request: Request = self.context["request"]
        return request.build_absolute_uri(reverse("backtest-detail", args=[job.pk]))

    def to_representation(self, job: Backtest) -> dict[str, Any]:
        data = super().to_representation(job)
        data["error"] = job.error or None
        return data


class BacktestList(serializers.Serializer[dict[str, Any]]):
    # DRF's metaclass moves declared fields off the class: this does not shadow .data.
    data = BacktestOut(many=True)  # type: ignore[assignment]
    next = serializers.URLField(allow_null=True)


class ListParams(serializers.Serializer[dict[str, Any]]):
    limit = serializers.IntegerField(min_value=1, max_value=200, default=50)
    before = serializers.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1, help_text="The `next` link carries it."
    )


class BacktestListView(OrganizationAPIView):
    api_key_scope = ApiKeyScope.TRADE_ANALYTICS

    @extend_schema(
        parameters=[ListParams],
        responses={200: BacktestList},
        operation_id="backtests_list",
        summary="The organization's backtest jobs, newest first",
    )
    def get(self, request: Request) -> Response:
        params = ListParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        limit = params.validated_data["limit"]
        backtests_abandoned_fail(organization=self.organization)
        jobs = selectors.backtests_list(organization=self.organization)
        if "before" in params.validated_data:
            jobs = jobs.filter(pk__lt=params.validated_data["before"])
        page = list(jobs.order_by("-pk")[: limit + 1])
        next_url = None
        if len(page) > limit:
            page = page[:limit]
            query = request.query_params.copy()
            query["before"] = str(page[-1].pk)
            next_url = request.build_absolute_uri(request.path) + "?" + query.urlencode()
        # drf-stubs type the instance of many=True as one Backtest, not a list of them.
        data = BacktestOut(page, many=True, context={"request": request}).data  # type: ignore[arg-type]
        return Response({"data": data, "next": next_url})

    @extend_schema(
        request=BacktestIn,
        responses={
            202: OpenApiResponse(BacktestOut, description="Queued; poll the Location."),
            400: error_response("Invalid parameters."),
            403: error_response("plan_required: no backtests left today on this plan."),
        },
        summary="Run a strategy over stored candles as a background job",
    )
    def post(self, request: Request) -> Response:
        serializer = BacktestIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        params = serializer.validated_data
        history_guard(organization=self.organization, start_ms=params["start"], now_ms=now_ms())
        cutoff = realtime_cutoff_ms(self.organization)
        if cutoff is not None:  # a delayed plan's backtest must not read real-time candles
            params["end"] = min(params["end"], complete_before(cutoff))
            if params["start"] >= params["end"]:
                raise ValidationError({"end": "Your plan's data ends before this start time."})
        api_key = self.caller.api_key if self.caller is not None else None
        # Without a key the caller is a signed-in member (quantsaas.api.base.caller_resolve).
        user = request.user if api_key is None and isinstance(request.user, User) else None
        try:
            job = backtest_submit(
                organization=self.organization,
                created_by=user,
                actor_api_key=api_key,
                params=params,
                ip_address=client_ip(request),
            )
        except BacktestNotAllowed as exc:
            raise PlanRequired(str(exc), plans=exc.plans) from exc
        except BacktestTooLarge as exc:
            raise ValidationError({"start": str(exc)}) from exc
        body = BacktestOut(job, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


class BacktestDetailView(OrganizationAPIView):
    api_key_scope = ApiKeyScope.TRADE_ANALYTICS

    @extend_schema(
        responses={200: BacktestOut, 404: error_response("No such job in this organization.")},
        summary="A backtest job: status, progress, and the result once it succeeded",
    )
    def get(self, request: Request, pk: int) -> Response:
        backtests_abandoned_fail(organization=self.organization)
        job = selectors.backtest_get(organization=self.organization, backtest_id=pk)
        if job is None:
            raise NotFound("No such backtest.")
        return Response(BacktestOut(job, context={"request": request}).data)
