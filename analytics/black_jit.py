"""Compiled (numba) kernels for ``analytics.options``: one fused pass per option.

The algorithm is exactly that of ``analytics.black`` (same regions, thresholds, initial
guesses, Householder steps and stopping rules), written per element instead of per array:
numpy has to evaluate every candidate formula over whole masked arrays and allocates a
temporary for each operation, whereas here each option takes only the branch it needs and
stays in registers. ``analytics.black`` remains the reference and the fallback wherever
numba is not installed; tests hold the two to the same answers.

The bounds a price is classified against (intrinsic value, upper bound) and, for the
inversion, x and D sqrt(F K) are not formed here but passed in by ``analytics.options``,
which forms them with numpy for both implementations: compiled code calls the C library's
exp and log1p, numpy its own SIMD versions on CPUs with AVX-512, and the two differ in the
last bit often enough that prices on a bound would otherwise get different reasons.

Threads: the parallel loops use numba's default "workqueue" threading layer, which aborts
the process if two threads launch parallel kernels at the same time. ``run`` therefore lets
only one caller at a time use them and gives every concurrent caller (ASGI thread pools,
threaded Celery workers) the serial loop, which releases the GIL and is always safe.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
from numba import float64, int8, njit, prange, types, void

from analytics.arrays import FloatArray
from analytics.special_jit import (
    INV_SQRT_2,
    JIT_OPTIONS,
    erfcx,
    log_norm_cdf,
    norm_cdf,
    norm_ppf,
)

_EPS = 2.220446049250313e-16
SQRT_2_OVER_PI = 0.7978845608028654
HALF_LOG_2PI = 0.9189385332046728
SQRT_3 = 1.7320508075688772
_ASYMPTOTIC_H = -10.0
_SMALL_T = 0.05
_ASYMPTOTIC_T = 2.0 * _EPS**0.0625
_DIRECT_H_PLUS_T = 0.85
_TAYLOR_ORDER = 13
_ASYMPTOTIC_TERMS = 40
_MAX_ITERATIONS = 60
_NEWTON_DONE = 1e-5
_LOW, _MID, _HIGH = 0, 1, 2

# Reason codes of implied_volatility; options.py maps them to the strings of the API.
OK, INVALID_INPUT, NO_TIME_VALUE, BELOW_INTRINSIC, ABOVE_UPPER_BOUND = 0, 1, 2, 3, 4


@njit(**JIT_OPTIONS)
def _bracket_small_t(h: float, t: float) -> float:
    prev = erfcx(-h * INV_SQRT_2)
    cur = h * prev + SQRT_2_OVER_PI
    coef = 2.0 * t
    total = coef * cur
    t2 = t * t
    for n in range(1, _TAYLOR_ORDER):
        prev, cur = cur, h * cur + n * prev
        if n % 2 == 0:
            coef = coef * t2 / (n * (n + 1))
            total += coef * cur
    return total


@njit(**JIT_OPTIONS)
def _bracket_asymptotic(h: float, t: float) -> float:
    u1 = -(h + t)
    u2 = t - h
    ell = math.log1p(-2.0 * t / u2)
    inv_u1_sq = 1.0 / (u1 * u1)
    power = 1.0 / u1
    total = -math.expm1(ell) * power
    double_factorial = 1.0
    for k in range(1, _ASYMPTOTIC_TERMS):
        double_factorial *= -(2 * k - 1)
        power = power * inv_u1_sq
        term = double_factorial * power * -math.expm1((2 * k + 1) * ell)
        total += term
        # The terms shrink geometrically until k ~ u1^2 / 2 > 48: stop once they no longer
        # reach the last bit (the array version always sums all forty).
        if abs(term) < 1e-18 * abs(total):
            break
    return SQRT_2_OVER_PI * total


@njit(**JIT_OPTIONS)
def _bracket(h: float, t: float) -> float:
    """Y(h+t) - Y(h-t) by the evaluation that does not cancel (see analytics.black)."""
    if h < _ASYMPTOTIC_H and h + t < _ASYMPTOTIC_H + _ASYMPTOTIC_T:
        return _bracket_asymptotic(h, t)
    if t < _SMALL_T:
        return _bracket_small_t(h, t)
    return erfcx(-(h + t) * INV_SQRT_2) - erfcx(-(h - t) * INV_SQRT_2)


@njit(**JIT_OPTIONS)
def otm_call(x: float, s: float) -> float:
    """Normalised out-of-the-money call b(x, s) for x <= 0, s > 0."""
    h = x / s
    t = 0.5 * s
    if h + t > _DIRECT_H_PLUS_T:
        return math.exp(0.5 * x) * norm_cdf(h + t) - math.exp(-0.5 * x) * norm_cdf(h - t)
    return 0.5 * math.exp(-0.5 * (h * h + t * t)) * _bracket(h, t)


@njit(**JIT_OPTIONS)
def _log_otm_call(x: float, s: float) -> float:
    h = x / s
    t = 0.5 * s
    if h + t > _DIRECT_H_PLUS_T:
        return math.log(otm_call(x, s))
    return math.log(0.5 * _bracket(h, t)) - 0.5 * (h * h + t * t)


@njit(**JIT_OPTIONS)
def _log_otm_call_complement(x: float, s: float) -> float:
    h = x / s
    t = 0.5 * s
    a = 0.5 * x + log_norm_cdf(-(h + t))
    b = -0.5 * x + log_norm_cdf(h - t)
    top = max(a, b)
    if top == -math.inf:
        return top
    return top + math.log1p(math.exp(-abs(a - b)))


@njit(**JIT_OPTIONS)
def _householder(newton: float, h2: float, h3: float) -> float:
    factor = (1.0 + 0.5 * h2 * newton) / (1.0 + newton * (h2 + h3 * newton / 6.0))
    if factor > 0.1 and factor < 10.0:
        return newton * factor
    return newton


@njit(**JIT_OPTIONS)
def _step(branch: int, x: float, target: float, s: float) -> tuple[float, float, bool]:
    """(Householder step, Newton step, whether s lies above the root) of one objective:
    1/ln b (low), ln b (mid) or ln(b_max - b) (high), as in analytics.black."""
    h = x / s
    t = 0.5 * s
    log_vega = -HALF_LOG_2PI - 0.5 * (h * h + t * t)
    q = (h * h - t * t) / s
    q2 = q * q - 3.0 * h * h / (s * s) - 0.25
    if branch == _HIGH:
        log_c = _log_otm_call_complement(x, s)
        mu = math.exp(log_vega - log_c)
        newton = (log_c - target) / mu
        h2 = mu + q
        h3 = 2.0 * mu * mu + 3.0 * mu * q + q2
        return _householder(newton, h2, h3), newton, log_c < target
    big_l = _log_otm_call(x, s)
    nu = math.exp(log_vega - big_l)
    if branch == _LOW:
        newton = (1.0 / big_l - 1.0 / target) * big_l * big_l / nu
        r = nu * (2.0 + big_l) / big_l
        h2 = q - r
        h3 = 2.0 * nu * nu * (big_l * big_l + 3.0 * big_l + 3.0) / (big_l * big_l)
        h3 += -3.0 * r * q + q2
    else:
        newton = (target - big_l) / nu
        h2 = q - nu
        h3 = 2.0 * nu * nu - 3.0 * nu * q + q2
    return _householder(newton, h2, h3), newton, big_l > target


@njit(**JIT_OPTIONS)
def _iterate(branch: int, x: float, target: float, s: float, lo: float, hi: float) -> float:
    for _ in range(_MAX_ITERATIONS):
        ds, newton, above = _step(branch, x, target, s)
        if above:
            hi = s
        else:
            lo = s
        new = s + ds
        done = abs(newton) <= _NEWTON_DONE * s or abs(ds) <= 2.0 * _EPS * s
        if not done and not (new > lo and new < hi):
            new = 0.5 * (lo + hi) if math.isfinite(hi) else 2.0 * max(s, lo)
            done = hi - lo <= 2.0 * _EPS * hi
        s = new
        if done:
            break
    return s


@njit(**JIT_OPTIONS)
def implied_s(x: float, beta: float, gap: float) -> float:
    """Total volatility s with b(x, s) = beta, for x <= 0 and 0 < beta < e^{x/2}."""
    s_c = math.sqrt(-2.0 * x)
    b_c = otm_call(x, s_c) if x < 0.0 else 0.0
    v_c = math.exp(0.5 * x - HALF_LOG_2PI)
    tangent = s_c + (beta - b_c) / v_c
    if beta < b_c and x < 0.0:
        log_beta = math.log(beta)
        z = math.exp((log_beta + math.log(3.0 * SQRT_3 / (2.0 * math.pi * -x))) / 3.0)
        guess = -x / (SQRT_3 * -norm_ppf(z)) if z < 0.5 else math.inf
        if tangent > 0.0 and tangent < guess:
            guess = tangent
        if not math.isfinite(guess):
            guess = 0.5 * s_c
        guess = min(max(guess, 1e-3 * s_c * _EPS), s_c)
        return _iterate(_LOW, x, log_beta, guess, 0.0, s_c)
    guess = -2.0 * norm_ppf(min(gap / (2.0 * math.cosh(0.5 * x)), 0.5))
    guess = max(max(guess, tangent), s_c)
    if gap < beta:
        return _iterate(_HIGH, x, math.log(gap), guess, s_c, math.inf)
    return _iterate(_MID, x, math.log(beta), guess, s_c, math.inf)


@njit(**JIT_OPTIONS)
def _price_one(
    spot: float,
    strike: float,
    expiry: float,
    rate: float,
    q: float,
    vol: float,
    intrinsic: float,
) -> float:
    """Intrinsic value (formed by numpy in analytics.options, so that prices are never an ulp
    below what either implementation inverts against) plus the out-of-the-money value."""
    s = vol * math.sqrt(expiry)
    x = math.log1p((spot - strike) / strike) + (rate - q) * expiry
    scale = strike * math.exp(0.5 * x - rate * expiry)
    if s > 0.0 and s < math.inf:
        b = otm_call(-abs(x), s)
    elif s == math.inf:
        b = math.exp(-0.5 * abs(x))
    else:
        b = 0.0
    price = intrinsic + b * scale
    if not (spot > 0.0 and strike > 0.0 and expiry >= 0.0 and vol >= 0.0):
        return math.nan
    return price


@njit(**JIT_OPTIONS)
def _implied_one(
    price: float,
    spot: float,
    strike: float,
    expiry: float,
    x: float,
    scale: float,
    intrinsic: float,
    upper: float,
) -> tuple[float, int]:
    """The checks of analytics.options.implied_volatility in the same order, on the x, scale
    and bounds it formed, with the same arithmetic: both give every option the same reason."""
    time_value = price - intrinsic
    gap = upper - price
    beta = time_value / scale
    gap_n = gap / scale
    valid = math.isfinite(price) and math.isfinite(x) and math.isfinite(scale)
    if not (valid and spot > 0.0 and strike > 0.0 and expiry >= 0.0):
        return math.nan, INVALID_INPUT
    if expiry == 0.0:
        return math.nan, NO_TIME_VALUE
    if time_value < 0.0:
        return math.nan, BELOW_INTRINSIC
    if gap <= 0.0:
        return math.nan, ABOVE_UPPER_BOUND
    if not (time_value > 0.0 and beta > 0.0 and gap_n > 0.0):
        return math.nan, NO_TIME_VALUE
    return implied_s(-abs(x), beta, gap_n) / math.sqrt(expiry), OK


# Explicit signatures: 'A' (any-stride) 1-D arrays, so scalars broadcast with stride 0 need
# no copy and one compiled version serves every mix of layouts and read-only views (compiled
# once, then loaded from numba's cache).
_INPUT = types.Array(float64, 1, "A", readonly=True)  # writable arrays convert to it
_PRICE_SIGNATURE = void(*([_INPUT] * 7), float64[:])
_IMPLIED_SIGNATURE = void(*([_INPUT] * 8), float64[:], int8[:])


@njit(_PRICE_SIGNATURE, **JIT_OPTIONS)
def _price_serial(
    spot: FloatArray,
    strike: FloatArray,
    expiry: FloatArray,
    rate: FloatArray,
    q: FloatArray,
    vol: FloatArray,
    intrinsic: FloatArray,
    out: FloatArray,
) -> None:
    for i in range(out.size):
        out[i] = _price_one(spot[i], strike[i], expiry[i], rate[i], q[i], vol[i], intrinsic[i])


@njit(_PRICE_SIGNATURE, parallel=True, **JIT_OPTIONS)
def _price_parallel(
    spot: FloatArray,
    strike: FloatArray,
    expiry: FloatArray,
    rate: FloatArray,
    q: FloatArray,
    vol: FloatArray,
    intrinsic: FloatArray,
    out: FloatArray,
) -> None:
    for i in prange(out.size):
        out[i] = _price_one(spot[i], strike[i], expiry[i], rate[i], q[i], vol[i], intrinsic[i])


@njit(_IMPLIED_SIGNATURE, **JIT_OPTIONS)
def _implied_serial(
    price: FloatArray,
    spot: FloatArray,
    strike: FloatArray,
    expiry: FloatArray,
    x: FloatArray,
    scale: FloatArray,
    intrinsic: FloatArray,
    upper: FloatArray,
    out: FloatArray,
    code: npt.NDArray[np.int8],
) -> None:
    for i in range(out.size):
        out[i], code[i] = _implied_one(
            price[i], spot[i], strike[i], expiry[i], x[i], scale[i], intrinsic[i], upper[i]
        )


@njit(_IMPLIED_SIGNATURE, parallel=True, **JIT_OPTIONS)
def _implied_parallel(
    price: FloatArray,
    spot: FloatArray,
    strike: FloatArray,
    expiry: FloatArray,
    x: FloatArray,
    scale: FloatArray,
    intrinsic: FloatArray,
    upper: FloatArray,
    out: FloatArray,
    code: npt.NDArray[np.int8],
) -> None:
    for i in prange(out.size):
        out[i], code[i] = _implied_one(
            price[i], spot[i], strike[i], expiry[i], x[i], scale[i], intrinsic[i], upper[i]
        )


_CALL = np.array([ord(c) for c in "call"], dtype=np.uint32)
_PUT = np.array([ord(c) for c in "put"], dtype=np.uint32)


@njit(**JIT_OPTIONS)
def _is(codes: npt.NDArray[np.uint32], i: int, word: npt.NDArray[np.uint32]) -> bool:
    """Row i spells ``word`` followed by nothing but NUL padding."""
    same = True
    for j in range(codes.shape[1]):
        same &= codes[i, j] == (word[j] if j < word.size else 0)
    return same


@njit(**JIT_OPTIONS)
def _signs(codes: npt.NDArray[np.uint32], out: FloatArray) -> bool:
    """+1 for "call", -1 for "put" from UTF-32 code points; False if any is something else."""
    for i in range(out.size):
        if _is(codes, i, _CALL):
            out[i] = 1.0
        elif _is(codes, i, _PUT):
            out[i] = -1.0
        else:
            return False
    return True


def signs(kinds: npt.NDArray[np.str_]) -> FloatArray | None:
    """The sign of each kind in one pass (numpy needs two string comparisons and a where);
    None when some kind is neither "call" nor "put"."""
    kinds = np.ascontiguousarray(kinds)
    width = kinds.dtype.itemsize // 4
    out = np.empty(kinds.shape)
    if width < 4:
        return None
    codes = kinds.reshape(-1).view(np.uint32).reshape(-1, width)
    return out if _signs(codes, out.reshape(-1)) else None


# Below this many options the cost of waking the worker threads outweighs the work.
PARALLEL_MIN = 20_000
_CHUNK = 4096
_parallel_lock = threading.Lock()


def _run(
    serial: Callable[..., None], parallel: Callable[..., None], n: int, *arrays: npt.NDArray[Any]
) -> None:
    # Security of the process, not just speed: a second concurrent parallel launch would
    # abort it (see the module docstring), so the lock is taken without waiting.
    if n >= PARALLEL_MIN and _parallel_lock.acquire(blocking=False):
        try:
            # Chunks handed out on demand rather than one static half per thread: on a busy
            # machine a descheduled thread would otherwise hold up the whole call.
            with numba.parallel_chunksize(_CHUNK):
                parallel(*arrays)
        finally:
            _parallel_lock.release()
    else:
        serial(*arrays)


def price(
    spot: FloatArray,
    strike: FloatArray,
    expiry: FloatArray,
    rate: FloatArray,
    q: FloatArray,
    vol: FloatArray,
    intrinsic: FloatArray,
) -> FloatArray:
    """bsm_price over equal-length 1-D float arrays (any strides), given the intrinsic values."""
    out = np.empty(spot.size)
    arrays = (spot, strike, expiry, rate, q, vol, intrinsic, out)
    _run(_price_serial, _price_parallel, out.size, *arrays)
    return out


def implied(
    price_: FloatArray,
    spot: FloatArray,
    strike: FloatArray,
    expiry: FloatArray,
    x: FloatArray,
    scale: FloatArray,
    intrinsic: FloatArray,
    upper: FloatArray,
) -> tuple[FloatArray, npt.NDArray[np.int8]]:
    """(volatility, reason code) over equal-length 1-D float arrays (any strides), given x,
    D sqrt(F K), the intrinsic value and the upper bound as analytics.options forms them."""
    out = np.empty(spot.size)
    code = np.empty(spot.size, dtype=np.int8)
    arrays = (price_, spot, strike, expiry, x, scale, intrinsic, upper, out, code)
    _run(_implied_serial, _implied_parallel, out.size, *arrays)
    return out, code
