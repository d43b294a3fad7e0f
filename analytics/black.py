"""The normalised Black call price, accurate to a few ulps everywhere, and its inverse.

Everything here works in the normalised form of Peter Jäckel's "Let's Be Rational" (2015):
with forward F, strike K, discount factor D, x = ln(F/K) and s = sigma * sqrt(T),

    b(x, s) = e^{x/2} Phi(x/s + s/2) - e^{-x/2} Phi(x/s - s/2) = call / (D * sqrt(F K)).

Puts and in-the-money options reduce to the out-of-the-money call (x <= 0) exactly, by put-call
parity, so only that case is computed. The textbook formula subtracts two nearly equal numbers
deep out of the money and for tiny s, which would make implied volatilities there wrong in the
leading digits; so, like Jäckel, we pick per element between four evaluations (an asymptotic
series for h = x/s < -10, a Taylor series in t = s/2 for small t, a scaled-complementary-error-
function form, and the plain formula near the upper bound). The inverse works on ln b (below
the inflection point) or on ln(b_max - b) (above it), which keeps every price down to the
smallest double usable and makes a third-order Householder step converge in two or three steps.

Plain numpy/scipy: no Django here, so notebooks can import it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import numpy as np
from scipy.special import erfcx, log_ndtr, ndtr, ndtri

from analytics.arrays import BoolArray, FloatArray

SQRT_2_OVER_PI = float(np.sqrt(2.0 / np.pi))
HALF_LOG_2PI = float(0.5 * np.log(2.0 * np.pi))
SQRT_3 = float(np.sqrt(3.0))
_EPS = float(np.finfo(float).eps)
_INV_SQRT_2 = float(1.0 / np.sqrt(2.0))

# Region thresholds: |h| beyond which the asymptotic series is used (as in "Let's Be Rational"),
# and t below which the Taylor series in t is used. Jäckel uses t < 0.21; above 0.05 the
# erfcx difference loses at most two digits of b, which the inversion divides by the price's
# elasticity (>= 1 there), so the cheaper form is kept down to 0.05 (checked against mpmath).
_ASYMPTOTIC_H = -10.0
_SMALL_T = 0.05
_ASYMPTOTIC_T = 2.0 * _EPS**0.0625
_DIRECT_H_PLUS_T = 0.85
_TAYLOR_ORDER = 13  # highest odd derivative used; t < 0.05 makes later terms < 1e-18
_ASYMPTOTIC_TERMS = 40  # |h + t| > 9.79: the series' smallest term lies near k = 48


def _bracket_small_t(h: FloatArray, t: FloatArray) -> FloatArray:
    """Y(h+t) - Y(h-t) by its Taylor series in t, Y(z) = 2 Phi(z) exp(z^2/2).

    Only odd derivatives survive; they follow from Y' = z Y + sqrt(2/pi) by the recursion
    Y^(n+1) = h Y^(n) + n Y^(n-1).
    """
    prev: FloatArray = erfcx(-h / np.sqrt(2.0))
    cur = h * prev + SQRT_2_OVER_PI
    coef = 2.0 * t
    total = coef * cur
    t2 = t * t
    for n in range(1, _TAYLOR_ORDER):
        prev, cur = cur, h * cur + n * prev
        if n % 2 == 0:  # cur is now the (n+1)-th, an odd derivative
            coef = coef * t2 / (n * (n + 1))
            total += coef * cur
    return total


def _bracket_asymptotic(h: FloatArray, t: FloatArray) -> FloatArray:
    """Y(h+t) - Y(h-t) for h + t << 0 from Y(z) ~ sqrt(2/pi) sum (-1)^k (2k-1)!! |z|^-(2k+1).

    Each difference |h+t|^-n - |h-t|^-n is formed as |h+t|^-n * -expm1(n log1p(-2t/|h-t|)), so
    nothing cancels.
    """
    u1 = -(h + t)
    u2 = t - h
    ell = np.log1p(-2.0 * t / u2)
    inv_u1_sq = 1.0 / (u1 * u1)
    power = 1.0 / u1
    total = -np.expm1(ell) * power
    double_factorial = 1.0
    for k in range(1, _ASYMPTOTIC_TERMS):
        double_factorial *= -(2 * k - 1)
        power = power * inv_u1_sq
        total += double_factorial * power * -np.expm1((2 * k + 1) * ell)
    return SQRT_2_OVER_PI * total


def _bracket(h: FloatArray, t: FloatArray) -> FloatArray:
    """Y(h+t) - Y(h-t), choosing per element the evaluation that does not cancel.

    The erfcx difference is computed for every element in bulk (whole-array operations are
    what make numpy fast); only the few elements of the other regions are recomputed.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        out: FloatArray = erfcx((h + t) * -_INV_SQRT_2)
        out -= erfcx((h - t) * -_INV_SQRT_2)
    in_wing = (h < _ASYMPTOTIC_H) & (h + t < _ASYMPTOTIC_H + _ASYMPTOTIC_T)
    asymptotic = np.flatnonzero(in_wing)
    if asymptotic.size:
        out[asymptotic] = _bracket_asymptotic(h[asymptotic], t[asymptotic])
    small_t = np.flatnonzero((t < _SMALL_T) & ~in_wing)
    if small_t.size:
        out[small_t] = _bracket_small_t(h[small_t], t[small_t])
    return out


def otm_call(x: FloatArray, s: FloatArray) -> FloatArray:
    """Normalised out-of-the-money call b(x, s) for x <= 0, s > 0 (1-D float arrays)."""
    h = x / s
    t = 0.5 * s
    exponent = h * h
    exponent += t * t
    exponent *= -0.5
    out = np.exp(exponent)
    out *= 0.5
    with np.errstate(over="ignore", invalid="ignore"):
        out *= _bracket(h, t)
    direct = np.flatnonzero(h + t > _DIRECT_H_PLUS_T)
    if direct.size:
        xd, hd, td = x[direct], h[direct], t[direct]
        out[direct] = np.exp(0.5 * xd) * ndtr(hd + td) - np.exp(-0.5 * xd) * ndtr(hd - td)
    return out


def log_otm_call(x: FloatArray, s: FloatArray) -> FloatArray:
    """ln b(x, s) for x <= 0; below h + t = 0.85 without ever forming b, so nothing underflows."""
    h = x / s
    t = 0.5 * s
    out = np.empty_like(h)
    direct = h + t > _DIRECT_H_PLUS_T
    if direct.any():
        out[direct] = np.log(otm_call(x[direct], s[direct]))
    other = ~direct
    if other.any():
        ho, to = h[other], t[other]
        out[other] = np.log(0.5 * _bracket(ho, to)) - 0.5 * (ho * ho + to * to)
    return out


def log_otm_call_complement(x: FloatArray, s: FloatArray) -> FloatArray:
    """ln(e^{x/2} - b(x, s)): the distance to the upper bound as a sum of two positive terms."""
    h = x / s
    t = 0.5 * s
    # Named and typed: scipy's ufuncs are typed as returning Any.
    call_term: FloatArray = 0.5 * x + log_ndtr(-(h + t))
    put_term: FloatArray = -0.5 * x + log_ndtr(h - t)
    return np.logaddexp(call_term, put_term)


def _householder(
    newton: FloatArray, h2: FloatArray, h3: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Third-order Householder step from the Newton step and the ratios g''/g', g'''/g'."""
    factor = (1.0 + 0.5 * h2 * newton) / (1.0 + newton * (h2 + h3 * newton / 6.0))
    # Far from the root the rational correction can shrink the step to nothing and stall the
    # iteration; there the plain Newton step is taken instead (the bracket catches overshoot).
    sane = (factor > 0.1) & (factor < 10.0)
    return np.where(sane, newton * factor, newton), newton


def _vega_ratios(x: FloatArray, s: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    h = x / s
    t = 0.5 * s
    log_vega = -HALF_LOG_2PI - 0.5 * (h * h + t * t)
    q = (h * h - t * t) / s  # b''/b'
    q2 = q * q - 3.0 * h * h / (s * s) - 0.25  # b'''/b'
    return log_vega, q, q2


_MAX_ITERATIONS = 60

# ((Householder step, Newton step), whether s lies above the root) of one objective.
_Step: TypeAlias = Callable[
    [FloatArray, FloatArray, FloatArray], tuple[tuple[FloatArray, FloatArray], BoolArray]
]


def _iterate(
    x: FloatArray,
    target: FloatArray,
    s: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    step: _Step,
) -> FloatArray:
    """Safeguarded iteration shared by both branches; only unconverged elements are recomputed.

    ``step(x, target, s)`` returns (householder step, whether s lies above the root).
    """
    s = s.copy()
    active = np.arange(s.size)
    xa, ta, sa, la, ha = x, target, s.copy(), lo.copy(), hi.copy()
    for _ in range(_MAX_ITERATIONS):
        if active.size == 0:
            break
        (ds, newton), above = step(xa, ta, sa)
        ha = np.where(above, sa, ha)
        la = np.where(above, la, sa)
        new = sa + ds
        # Once the Newton step is below 1e-9 s, the fourth-order step just taken is exact to
        # the last bit; a step that rounding has reduced to nothing also ends the iteration.
        done = (np.abs(newton) <= 1e-9 * sa) | (np.abs(ds) <= 2.0 * _EPS * sa)
        outside = ~(done | ((new > la) & (new < ha)))
        if outside.any():
            # Householder left the bracket: bisect it, or double while no upper end is known.
            fallback = np.where(np.isfinite(ha), 0.5 * (la + ha), 2.0 * np.maximum(sa, la))
            new = np.where(outside, fallback, new)
            done |= outside & (ha - la <= 2.0 * _EPS * ha)
        s[active] = new
        keep = ~done
        active = active[keep]
        xa, ta, sa, la, ha = xa[keep], ta[keep], new[keep], la[keep], ha[keep]
    return s


def _step_low(
    x: FloatArray, log_beta: FloatArray, s: FloatArray
) -> tuple[tuple[FloatArray, FloatArray], BoolArray]:
    """Householder step on g(s) = 1/ln b(s) - 1/ln beta, nearly linear in s near zero."""
    big_l = log_otm_call(x, s)
    log_vega, q, q2 = _vega_ratios(x, s)
    nu = np.exp(log_vega - big_l)
    newton = (1.0 / big_l - 1.0 / log_beta) * big_l * big_l / nu
    r = nu * (2.0 + big_l) / big_l
    h2 = q - r
    h3 = 2.0 * nu * nu * (big_l * big_l + 3.0 * big_l + 3.0) / (big_l * big_l) - 3.0 * r * q + q2
    return _householder(newton, h2, h3), big_l > log_beta


def _step_high(
    x: FloatArray, log_gap: FloatArray, s: FloatArray
) -> tuple[tuple[FloatArray, FloatArray], BoolArray]:
    """Householder step on g(s) = ln(b_max - b(s)) - ln(b_max - beta)."""
    log_c = log_otm_call_complement(x, s)
    log_vega, q, q2 = _vega_ratios(x, s)
    mu = np.exp(log_vega - log_c)
    newton = (log_c - log_gap) / mu
    h2 = mu + q
    h3 = 2.0 * mu * mu + 3.0 * mu * q + q2
    return _householder(newton, h2, h3), log_c < log_gap


def _step_mid(
    x: FloatArray, log_beta: FloatArray, s: FloatArray
) -> tuple[tuple[FloatArray, FloatArray], BoolArray]:
    """Householder step on g(s) = ln b(s) - ln beta, for prices above the inflection point
    but still below half the upper bound, where ln(b_max - b) would drop digits of beta."""
    big_l = log_otm_call(x, s)
    log_vega, q, q2 = _vega_ratios(x, s)
    nu = np.exp(log_vega - big_l)
    newton = (log_beta - big_l) / nu
    h2 = q - nu
    h3 = 2.0 * nu * nu - 3.0 * nu * q + q2
    return _householder(newton, h2, h3), big_l > log_beta


def implied_s(x: FloatArray, beta: FloatArray, gap: FloatArray) -> FloatArray:
    """Total volatility s with b(x, s) = beta, for x <= 0 and 0 < beta < e^{x/2}.

    ``gap`` is e^{x/2} - beta computed by the caller from the original price, so that the
    distance to the upper bound keeps every digit the input carries.
    """
    s = np.empty_like(x)
    s_c = np.sqrt(-2.0 * x)  # inflection point of b in s: b convex below, concave above
    with np.errstate(divide="ignore", invalid="ignore"):
        b_c = np.where(x < 0.0, otm_call(x, np.where(x < 0.0, s_c, 1.0)), 0.0)
    v_c = np.exp(0.5 * x - HALF_LOG_2PI)  # b'(s_c)
    low = (beta < b_c) & (x < 0.0)
    tangent = s_c + (beta - b_c) / v_c

    if low.any():
        xl, bl, tl, scl = x[low], beta[low], tangent[low], s_c[low]
        log_beta = np.log(bl)
        # Small-s asymptote b ~ 2 pi |x| / (3 sqrt 3) Phi(-|x| / (sqrt 3 s))^3, inverted.
        z = np.exp((log_beta + np.log(3.0 * SQRT_3 / (2.0 * np.pi * -xl))) / 3.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            guess = np.where(z < 0.5, -xl / (SQRT_3 * -ndtri(np.minimum(z, 0.5))), np.inf)
        # b is convex below s_c, so the tangent at s_c never undershoots: take the smaller.
        guess = np.where((tl > 0.0) & (tl < guess), tl, guess)
        guess = np.where(np.isfinite(guess), guess, 0.5 * scl)
        guess = np.clip(guess, 1e-3 * scl * _EPS, scl)
        s[low] = _iterate(xl, log_beta, guess, np.zeros_like(xl), scl, _step_low)

    high = ~low
    if high.any():
        xh, bh, gh, th, sch = x[high], beta[high], gap[high], tangent[high], s_c[high]
        scale = 2.0 * np.cosh(0.5 * xh)
        # Large-s asymptote b_max - b ~ 2 cosh(x/2) Phi(-s/2), exact at the money; b is concave
        # above s_c, so the tangent there never overshoots: take the larger.
        guess = -2.0 * ndtri(np.minimum(gh / scale, 0.5))
        guess = np.maximum(np.maximum(guess, th), sch)
        hi = np.full_like(xh, np.inf)
        # Iterate on whichever of beta and b_max - beta is the smaller number, so that the
        # objective keeps all the digits of the one that decides the volatility.
        near_top = gh < bh
        result = np.empty_like(xh)
        for part, target, step in (
            (near_top, np.log(gh), _step_high),
            (~near_top, np.log(bh), _step_mid),
        ):
            if part.any():
                result[part] = _iterate(
                    xh[part], target[part], guess[part], sch[part], hi[part], step
                )
        s[high] = result
    return s
