"""Black-Scholes-Merton prices, greeks and implied volatility, vectorised over numpy arrays.

Units follow docs/api.md: rates, dividend yields and volatilities are continuously compounded
decimals, expiry is in years, and greeks are plain partial derivatives per unit of the input
(vega per 1.00 of volatility, rho per 1.00 of rate, theta per year of calendar time passing).
Every argument broadcasts against the others; ``kind`` is "call", "put" or an array of them.

Prices and implied volatilities go through the normalised Black function of
``analytics.black`` so that deep out-of-the-money prices keep their leading digits and the
inversion is right to about 1e-12 relative wherever the price admits a volatility. Where it
does not, the volatility is NaN and ``reason`` says why; no number is ever made up.

Where numba is installed, prices and implied volatilities come from the compiled kernels of
``analytics.black_jit`` (the same algorithm, one fused pass per option, on all cores), which
is what meets the speed targets of issue 6; without it the numpy code here is used. Setting
the environment variable ANALYTICS_NUMBA=0 forces the numpy path. Both take the bounds a
price is checked against from ``_bounds`` here, so they give every price the same reason.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Literal, NamedTuple, Protocol, overload

import numpy as np
import numpy.typing as npt
from numpy.typing import ArrayLike
from scipy.special import ndtr

from analytics import black
from analytics.arrays import FloatArray

REASON_BELOW_INTRINSIC = "below_intrinsic"
REASON_ABOVE_UPPER_BOUND = "above_upper_bound"
REASON_NO_TIME_VALUE = "no_time_value"
REASON_INVALID_INPUT = "invalid_input"

logger = logging.getLogger(__name__)


class Greeks(NamedTuple):
    delta: FloatArray
    gamma: FloatArray
    vega: FloatArray
    theta: FloatArray
    rho: FloatArray


class ImpliedVolatility(NamedTuple):
    """``volatility`` is NaN exactly where ``reason`` is non-empty."""

    volatility: FloatArray
    reason: npt.NDArray[np.str_]


def _sign(kind: ArrayLike) -> FloatArray:
    """+1 for calls, -1 for puts; anything else is a caller error, not a silent call."""
    kinds = np.asarray(kind)
    kernels = _kernels() if kinds.dtype.kind == "U" and kinds.size > 1 else None
    if kernels is not None:
        signs = kernels.signs(kinds)
        if signs is None:
            raise ValueError('kind must be "call" or "put"')
        return signs
    is_call = kinds == "call"
    is_put = kinds == "put"
    if not np.all(is_call | is_put):
        raise ValueError('kind must be "call" or "put"')
    return np.where(is_call, 1.0, -1.0)


def _inputs(kind: ArrayLike, *values: ArrayLike) -> tuple[tuple[int, ...], list[FloatArray]]:
    """The broadcast shape and every argument as a flat float array of that many elements.

    A scalar becomes a stride-0 view rather than a copy: pricing a whole chain at one spot
    and rate should not write out arrays of repeated numbers first.
    """
    arrays = [_sign(kind), *(np.asarray(v, dtype=float) for v in values)]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    n = math.prod(shape)
    flat: list[FloatArray] = []
    for a in arrays:
        if a.shape == shape:
            flat.append(np.ascontiguousarray(a).reshape(n))
        elif a.size == 1:
            flat.append(np.broadcast_to(a.reshape(()), (n,)))
        else:
            flat.append(np.broadcast_to(a, shape).reshape(n))
    return shape, flat


class _Kernels(Protocol):
    """What this module uses of ``analytics.black_jit`` (which satisfies it as a module)."""

    def signs(self, kinds: npt.NDArray[np.str_]) -> FloatArray | None: ...

    def price(
        self,
        spot: FloatArray,
        strike: FloatArray,
        expiry: FloatArray,
        rate: FloatArray,
        q: FloatArray,
        vol: FloatArray,
        intrinsic: FloatArray,
    ) -> FloatArray: ...

    def implied(
        self,
        price_: FloatArray,
        spot: FloatArray,
        strike: FloatArray,
        expiry: FloatArray,
        x: FloatArray,
        scale: FloatArray,
        intrinsic: FloatArray,
        upper: FloatArray,
    ) -> tuple[FloatArray, npt.NDArray[np.int8]]: ...


# analytics.black_jit once loaded; False where it cannot be.
_compiled_kernels: _Kernels | Literal[False] | None = None


def _kernels() -> _Kernels | None:
    """The compiled kernels, loaded on first use: importing numba costs about a second, which
    processes that never price an option (web, beat) should not pay at start-up."""
    global _compiled_kernels
    if _compiled_kernels is None:
        _compiled_kernels = False
        if os.environ.get("ANALYTICS_NUMBA", "1") != "0":
            try:
                from analytics import black_jit
            except ImportError:
                logger.info("numba is not installed: options use the numpy implementation")
            except Exception:  # e.g. no writable cache directory: slower, but still right
                logger.warning("compiled option kernels unavailable", exc_info=True)
            else:
                _compiled_kernels = black_jit
    return _compiled_kernels or None


def _log_moneyness(spot: FloatArray, strike: FloatArray) -> FloatArray:
    """ln(S/K) as log1p((S-K)/K): S-K is exact near the money, so x keeps its relative
    accuracy there, where implied volatilities of short options are most sensitive to it."""
    return np.log1p((spot - strike) / strike)


def _forward_terms(
    spot: FloatArray,
    strike: FloatArray,
    expiry: FloatArray,
    rate: FloatArray,
    dividend_yield: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Log-moneyness x = ln(F/K) and the discounted geometric mean D sqrt(F K)."""
    x = _log_moneyness(spot, strike) + (rate - dividend_yield) * expiry
    scale = strike * np.exp(0.5 * x - rate * expiry)
    return x, scale


@overload
def _bounds(
    sign: FloatArray,
    spot: FloatArray,
    strike: FloatArray,
    expiry: FloatArray,
    rate: FloatArray,
    q: FloatArray,
    *,
    with_upper: Literal[True] = ...,
) -> tuple[FloatArray, FloatArray]: ...
@overload
def _bounds(
    sign: FloatArray,
    spot: FloatArray,
    strike: FloatArray,
    expiry: FloatArray,
    rate: FloatArray,
    q: FloatArray,
    *,
    with_upper: Literal[False],
) -> tuple[FloatArray, None]: ...
def _bounds(
    sign: FloatArray,
    spot: FloatArray,
    strike: FloatArray,
    expiry: FloatArray,
    rate: FloatArray,
    q: FloatArray,
    *,
    with_upper: bool = True,
) -> tuple[FloatArray, FloatArray | None]:
    """The discounted intrinsic value and the upper bound (S e^{-qT} for a call, K e^{-rT} for
    a put): the two numbers a price is classified against.

    Formed here, by numpy, for both implementations; the compiled kernels take them as inputs
    rather than forming their own. Pricing and inversion must round the intrinsic value
    identically, or a deep in-the-money price could come back an ulp "below intrinsic", and
    the two implementations must too, or they would give such a price different reasons. A
    copy of these formulas in compiled code would not do: numba's exp is the C library's,
    while numpy's is its own SIMD one on CPUs with AVX-512, and the two differ in the last bit
    for about one argument in twenty.
    """
    carried_spot = _times_exp(spot, q, expiry)
    discounted_strike = _times_exp(strike, rate, expiry)
    intrinsic = carried_spot - discounted_strike
    intrinsic *= sign
    np.maximum(intrinsic, 0.0, out=intrinsic)
    if not with_upper:
        return intrinsic, None
    return intrinsic, np.where(sign > 0, carried_spot, discounted_strike)


def _times_exp(value: FloatArray, rate: FloatArray, expiry: FloatArray) -> FloatArray:
    """value * e^{-rate * expiry}, rounded as written but in one array: a price call on ten
    million options should not fault in three temporaries per bound."""
    out = np.multiply(rate, expiry)
    np.negative(out, out=out)
    np.exp(out, out=out)
    out *= value
    return out


def _time_value(
    spot: FloatArray,
    strike: FloatArray,
    expiry: FloatArray,
    rate: FloatArray,
    q: FloatArray,
    s: FloatArray,
) -> FloatArray:
    """Out-of-the-money value D sqrt(F K) b(-|x|, s) from the accurate normalised Black."""
    x, scale = _forward_terms(spot, strike, expiry, rate, q)
    live = (s > 0.0) & np.isfinite(s)
    if live.all():  # the usual case: no copies
        b = black.otm_call(-np.abs(x), s)
    else:
        b = np.zeros_like(s)
        b[live] = black.otm_call(-np.abs(x[live]), s[live])
        infinite = s == np.inf
        b[infinite] = np.exp(-0.5 * np.abs(x[infinite]))
    b *= scale
    return b


def bsm_price(
    kind: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    dividend_yield: ArrayLike,
    volatility: ArrayLike,
) -> FloatArray:
    """Black-Scholes-Merton price; NaN for non-positive spot/strike or negative expiry/vol."""
    shape, (sign, spot, strike, expiry, rate, q, vol) = _inputs(
        kind, spot, strike, expiry, rate, dividend_yield, volatility
    )
    # Intrinsic value plus the out-of-the-money option of the same strike (put-call parity done
    # exactly), the latter from the accurate normalised Black function: the price never falls
    # below intrinsic by rounding and keeps its digits deep in the wings.
    with np.errstate(over="ignore", invalid="ignore"):
        intrinsic, _ = _bounds(sign, spot, strike, expiry, rate, q, with_upper=False)
    kernels = _kernels()
    if kernels is not None:
        return kernels.price(spot, strike, expiry, rate, q, vol, intrinsic).reshape(shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = vol * np.sqrt(expiry)
        time_value = _time_value(spot, strike, expiry, rate, q, s)
        price = intrinsic + time_value
    bad = ~((spot > 0) & (strike > 0) & (expiry >= 0) & (vol >= 0))
    price[bad | np.isnan(price)] = np.nan
    return price.reshape(shape)


def bsm_greeks(
    kind: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    dividend_yield: ArrayLike,
    volatility: ArrayLike,
) -> Greeks:
    """Delta, gamma, vega, theta (per year of calendar time) and rho, as in docs/api.md.

    At zero expiry or zero volatility the derivatives do not exist; they are NaN there.
    """
    shape, (sign, spot, strike, expiry, rate, q, vol) = _inputs(
        kind, spot, strike, expiry, rate, dividend_yield, volatility
    )
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sqrt_t = np.sqrt(expiry)
        s = vol * sqrt_t
        x = _log_moneyness(spot, strike) + (rate - q) * expiry
        d1 = x / s + 0.5 * s
        d2 = d1 - s
        carry = np.exp(-q * expiry)
        discount = np.exp(-rate * expiry)
        density = np.exp(-0.5 * d1 * d1) / np.sqrt(2.0 * np.pi)
        n1 = ndtr(sign * d1)
        n2 = ndtr(sign * d2)
        delta = sign * carry * n1
        gamma = carry * density / (spot * s)
        vega = spot * carry * density * sqrt_t
        theta = (
            -spot * carry * density * vol / (2.0 * sqrt_t)
            - sign * rate * strike * discount * n2
            + sign * q * spot * carry * n1
        )
        rho = sign * strike * expiry * discount * n2
    bad = ~((spot > 0) & (strike > 0) & (s > 0) & np.isfinite(s))
    out = []
    for greek in (delta, gamma, vega, theta, rho):
        greek[bad] = np.nan
        out.append(greek.reshape(shape))
    return Greeks(*out)


# Indexed by the reason codes of analytics.black_jit.
_REASONS = np.array(
    [
        "",
        REASON_INVALID_INPUT,
        REASON_NO_TIME_VALUE,
        REASON_BELOW_INTRINSIC,
        REASON_ABOVE_UPPER_BOUND,
    ],
    dtype="<U17",
)


def implied_volatility(
    kind: ArrayLike,
    price: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    dividend_yield: ArrayLike,
) -> ImpliedVolatility:
    """The volatility that reproduces ``price``, or NaN with the reason none exists.

    Reasons: "below_intrinsic" (price under the discounted intrinsic value), "no_time_value"
    (zero expiry, or a price exactly equal to intrinsic value, which any volatility down to
    zero explains), "above_upper_bound" (a call at or above S e^{-qT}, a put at or above
    K e^{-rT}: only an infinite volatility would do), "invalid_input" (non-finite numbers,
    non-positive spot or strike, negative expiry).
    """
    shape, (sign, price, spot, strike, expiry, rate, q) = _inputs(
        kind, price, spot, strike, expiry, rate, dividend_yield
    )
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # Everything a reason depends on that needs exp or log, formed once for both
        # implementations (see _bounds); the rest is arithmetic both round alike.
        x, scale = _forward_terms(spot, strike, expiry, rate, q)
        intrinsic, upper = _bounds(sign, spot, strike, expiry, rate, q)
    kernels = _kernels()
    if kernels is not None:
        vol, code = kernels.implied(price, spot, strike, expiry, x, scale, intrinsic, upper)
        reason = np.zeros(vol.size, dtype="<U17")  # "" everywhere, without writing it out
        failed = np.flatnonzero(code)
        reason[failed] = _REASONS[code[failed]]
        return ImpliedVolatility(vol.reshape(shape), reason.reshape(shape))
    n = price.size
    vol = np.full(n, np.nan)
    reason = np.full(n, "", dtype="<U17")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        time_value = price - intrinsic
        gap = upper - price
        beta = time_value / scale
        gap_n = gap / scale
    valid = (
        np.isfinite(price)
        & np.isfinite(x)
        & np.isfinite(scale)
        & (spot > 0)
        & (strike > 0)
        & (expiry >= 0)
    )
    reason[~valid] = REASON_INVALID_INPUT
    checks = (
        (expiry == 0, REASON_NO_TIME_VALUE),
        (time_value < 0, REASON_BELOW_INTRINSIC),
        (gap <= 0, REASON_ABOVE_UPPER_BOUND),
        (time_value == 0, REASON_NO_TIME_VALUE),
        (~((beta > 0) & (gap_n > 0)), REASON_NO_TIME_VALUE),
    )
    pending = valid.copy()
    for condition, why in checks:
        hit = pending & condition
        reason[hit] = why
        pending &= ~hit
    if pending.any():
        s = black.implied_s(-np.abs(x[pending]), beta[pending], gap_n[pending])
        vol[pending] = s / np.sqrt(expiry[pending])
    return ImpliedVolatility(vol.reshape(shape), reason.reshape(shape))
