"""POST /api/v1/options/price and /implied-volatility: batches of up to MAX_OPTIONS.

A batch never fails for one bad row: each row is checked on its own and answered in place,
with an ``error`` in the API's error shape where its fields are invalid. Rows are parsed
with a plain loop into numpy arrays (a DRF serializer per row would cost more than the
pricing itself) and priced in one vectorised call of ``analytics.options``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import OrganizationAPIView
from analytics.api.access import analytics_guard
from analytics.arrays import FloatArray
from analytics.options import (
    REASON_INVALID_INPUT,
    bsm_greeks,
    bsm_price,
    implied_volatility,
)
from quantsaas.api.errors import error_body
from quantsaas.api.schema import error_response

MAX_OPTIONS = 20_000
KINDS = ("call", "put")
GREEKS = ("delta", "gamma", "vega", "theta", "rho")

# field -> (default or None when required, check, message when the check fails)
_Check: TypeAlias = tuple[Callable[[float], bool], str]
FieldRule: TypeAlias = tuple[float | None, Callable[[float], bool], str]
_POSITIVE: _Check = (lambda v: v > 0, "Must be greater than 0.")
_NON_NEGATIVE: _Check = (lambda v: v >= 0, "Must be 0 or more.")
_ANY: _Check = (lambda v: True, "")
COMMON_FIELDS: dict[str, FieldRule] = {
    "spot": (None, *_POSITIVE),
    "strike": (None, *_POSITIVE),
    "expiry": (None, *_NON_NEGATIVE),
    "rate": (0.0, *_ANY),
    "dividend_yield": (0.0, *_ANY),
}
PRICE_FIELDS: dict[str, FieldRule] = {**COMMON_FIELDS, "volatility": (None, *_NON_NEGATIVE)}
IV_FIELDS: dict[str, FieldRule] = {**COMMON_FIELDS, "price": (None, *_ANY)}


def _row_problems(
    row: object, fields: dict[str, FieldRule]
) -> tuple[dict[str, float], dict[str, str]]:
    """(values, problems) of one row; problems maps field names to messages."""
    if not isinstance(row, dict):
        return {}, {"non_field_errors": "Each option must be a JSON object."}
    values: dict[str, float] = {}
    problems: dict[str, str] = {}
    if row.get("type") not in KINDS:
        problems["type"] = 'Use "call" or "put".'
    for name, (default, check, message) in fields.items():
        value = row.get(name, default)
        if value is None:
            problems[name] = "This field is required."
        elif isinstance(value, bool) or not isinstance(value, int | float):
            problems[name] = "A number is required."
        elif not math.isfinite(value):
            problems[name] = "Must be a finite number."
        elif not check(value):
            problems[name] = message
        else:
            values[name] = float(value)
    return values, problems


def options_parse(
    payload: object, fields: dict[str, FieldRule]
) -> tuple[npt.NDArray[np.str_], dict[str, FloatArray], list[dict[str, Any] | None]]:
    """Kinds, arrays per field, and per-row errors (None for good rows).

    Bad rows get harmless placeholder inputs so the batch stays one vectorised call;
    their outputs are replaced by the error afterwards.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("options"), list):
        raise ValidationError({"options": 'Send {"options": [...]}, a list of options.'})
    rows = payload["options"]
    if not rows:
        raise ValidationError({"options": "The list is empty."})
    if len(rows) > MAX_OPTIONS:
        raise ValidationError({"options": f"At most {MAX_OPTIONS} options per request."})
    n = len(rows)
    kinds = np.empty(n, dtype="<U4")
    arrays = {name: np.empty(n) for name in fields}
    errors: list[dict[str, Any] | None] = [None] * n
    for i, row in enumerate(rows):
        values, problems = _row_problems(row, fields)
        if problems:
            non_field = problems.pop("non_field_errors", None)
            errors[i] = error_body(
                "invalid",
                non_field or "Some fields of this option are invalid.",
                {"fields": problems} if problems else {},
            )["error"]
            kinds[i] = "call"
            for name in fields:
                arrays[name][i] = 1.0
        else:
            kinds[i] = row["type"]
            for name in fields:
                arrays[name][i] = values[name]
    return kinds, arrays, errors


def _numbers(values: FloatArray) -> list[float | None]:
    """JSON has no NaN: undefined numbers (e.g. greeks at zero expiry) answer null."""
    return [v if math.isfinite(v) else None for v in values.tolist()]


class OptionIn(serializers.Serializer[dict[str, Any]]):
    type = serializers.ChoiceField(choices=KINDS)
    spot = serializers.FloatField(min_value=0)
    strike = serializers.FloatField(min_value=0)
    expiry = serializers.FloatField(min_value=0, help_text="Years.")
    rate = serializers.FloatField(default=0.0, help_text="Continuously compounded; 0.05 = 5 %.")
    dividend_yield = serializers.FloatField(default=0.0, help_text="Continuously compounded.")
    volatility = serializers.FloatField(min_value=0, help_text="0.2 = 20 %.")


class OptionsPriceIn(serializers.Serializer[dict[str, Any]]):
    options = serializers.ListField(child=OptionIn(), min_length=1, max_length=MAX_OPTIONS)


class RowError(serializers.Serializer[dict[str, Any]]):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()


class OptionPriceOut(serializers.Serializer[dict[str, Any]]):
    price = serializers.FloatField(allow_null=True)
    delta = serializers.FloatField(allow_null=True, help_text="dV/dS")
    gamma = serializers.FloatField(allow_null=True, help_text="d2V/dS2")
    vega = serializers.FloatField(allow_null=True, help_text="dV/dsigma, per 1.00 of vol")
    theta = serializers.FloatField(allow_null=True, help_text="dV/dt per year of time passing")
    rho = serializers.FloatField(allow_null=True, help_text="dV/dr, per 1.00 of rate")
    error = RowError(required=False, help_text="Only on a row whose fields are invalid.")


class OptionsPriceOut(serializers.Serializer[dict[str, Any]]):
    # DRF's metaclass moves declared fields off the class: this does not shadow .data.
    data = OptionPriceOut(many=True)  # type: ignore[assignment]


class IvOptionIn(OptionIn):
    volatility = None  # type: ignore[assignment]  # DRF's way to drop an inherited field
    price = serializers.FloatField()


class ImpliedVolatilityIn(serializers.Serializer[dict[str, Any]]):
    options = serializers.ListField(child=IvOptionIn(), min_length=1, max_length=MAX_OPTIONS)


class ImpliedVolatilityRowOut(serializers.Serializer[dict[str, Any]]):
    volatility = serializers.FloatField(allow_null=True)
    reason = serializers.ChoiceField(
        required=False,
        choices=["below_intrinsic", "above_upper_bound", "no_time_value", "invalid_input"],
        help_text="Why no volatility exists; only when volatility is null.",
    )
    error = RowError(required=False, help_text="Only on a row whose fields are invalid.")


class ImpliedVolatilityOut(serializers.Serializer[dict[str, Any]]):
    # DRF's metaclass moves declared fields off the class: this does not shadow .data.
    data = ImpliedVolatilityRowOut(many=True)  # type: ignore[assignment]


ERRORS = {
    400: error_response("The batch itself is malformed (rows are answered in place)."),
    403: error_response("plan_required: the plan does not include analytics."),
}


class OptionsPriceView(OrganizationAPIView):
    @extend_schema(
        request=OptionsPriceIn,
        responses={200: OptionsPriceOut, **ERRORS},
        summary="Black-Scholes-Merton prices and greeks, in batches",
    )
    def post(self, request: Request) -> Response:
        analytics_guard(organization=self.organization)
        kinds, a, errors = options_parse(request.data, PRICE_FIELDS)
        inputs = (
            kinds,
            a["spot"],
            a["strike"],
            a["expiry"],
            a["rate"],
            a["dividend_yield"],
            a["volatility"],
        )
        price = _numbers(bsm_price(*inputs))
        greeks = [_numbers(g) for g in bsm_greeks(*inputs)]
        data: list[dict[str, object]] = []
        for i, error in enumerate(errors):
            if error is not None:
                data.append({"price": None, **dict.fromkeys(GREEKS), "error": error})
            else:
                row: dict[str, object] = {"price": price[i]}
                for name, values in zip(GREEKS, greeks, strict=True):
                    row[name] = values[i]
                data.append(row)
        return Response({"data": data})


class ImpliedVolatilityView(OrganizationAPIView):
    @extend_schema(
        request=ImpliedVolatilityIn,
        responses={200: ImpliedVolatilityOut, **ERRORS},
        summary="Implied volatility, in batches; null with a reason where none exists",
    )
    def post(self, request: Request) -> Response:
        analytics_guard(organization=self.organization)
        kinds, a, errors = options_parse(request.data, IV_FIELDS)
        result = implied_volatility(
            kinds, a["price"], a["spot"], a["strike"], a["expiry"], a["rate"], a["dividend_yield"]
        )
        volatility = _numbers(result.volatility)
        reasons = result.reason.tolist()
        data: list[dict[str, object]] = []
        for i, error in enumerate(errors):
            if error is not None:
                data.append({"volatility": None, "reason": REASON_INVALID_INPUT, "error": error})
            elif volatility[i] is None:
                data.append({"volatility": None, "reason": reasons[i] or REASON_INVALID_INPUT})
            else:
                data.append({"volatility": volatility[i]})
        return Response({"data": data})
