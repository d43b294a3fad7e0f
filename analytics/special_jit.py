"""Scalar float64 special functions for the compiled kernels of ``analytics.black_jit``.

Numba cannot call scipy.special from compiled code, and calling it per element through a
function pointer would cost more than the whole Black formula. These are the classic
rational approximations Peter Jäckel's reference "Let's Be Rational" code uses: W. J. Cody's
erfcx (Math. Comp. 1969, as in his CALERF routine) and M. J. Wichura's AS241 inverse normal
(Appl. Statist. 1988), both accurate to a few ulps in double precision. The normal CDF itself
comes from the C library's erfc, which is correctly rounded to within an ulp.
"""

from __future__ import annotations

import math
from typing import Literal, TypedDict

from numba import njit


class JitOptions(TypedDict):
    """The keyword arguments every kernel is compiled with, typed so ``njit(**JIT_OPTIONS)``
    checks against numba's own signature."""

    cache: bool
    nogil: bool
    error_model: Literal["python", "numpy"]


JIT_OPTIONS: JitOptions = {"cache": True, "nogil": True, "error_model": "numpy"}

INV_SQRT_2 = 0.7071067811865475244
_SQRPI = 0.56418958354775628695  # 1 / sqrt(pi)

# Cody's erf on |x| <= 0.46875.
_A = (3.1611237438705656, 113.864154151050156, 377.485237685302021, 3209.37758913846947)
_A4 = 0.185777706184603153
_B = (23.6012909523441209, 244.024637934444173, 1282.61652607737228, 2844.23683343917062)
# erfcx on 0.46875 < x <= 4.
_C = (
    0.564188496988670089,
    8.88314979438837594,
    66.1191906371416295,
    298.635138197400131,
    881.95222124176909,
    1712.04761263407058,
    2051.07837782607147,
    1230.33935479799725,
)
_C8 = 2.15311535474403846e-8
_D = (
    15.7449261107098347,
    117.693950891312499,
    537.181101862009858,
    1621.38957456669019,
    3290.79923573345963,
    4362.61909014324716,
    3439.36767414372164,
    1230.33935480374942,
)
# erfcx on x > 4, in powers of 1/x^2.
_P = (0.305326634961232344, 0.360344899949804439, 0.125781726111229246, 0.0160837851487422766)
_P4 = 6.58749161529837803e-4
_P5 = 0.0163153871373020978
_Q = (2.56852019228982242, 1.87295284992346047, 0.527905102951428412, 0.0605183413124413191)
_Q4 = 0.00233520497626869185
_XNEG = -26.628  # erfcx overflows below this
_XHUGE = 6.71e7  # erfcx(x) = 1 / (x sqrt(pi)) to double precision above this


@njit(**JIT_OPTIONS)
def erfcx(x: float) -> float:
    """exp(x^2) erfc(x) without overflow or cancellation (Cody's CALERF with jint = 2)."""
    y = abs(x)
    if y <= 0.46875:
        ysq = y * y
        num = _A4 * ysq
        den = ysq
        for i in range(3):
            num = (num + _A[i]) * ysq
            den = (den + _B[i]) * ysq
        return (1.0 - x * (num + _A[3]) / (den + _B[3])) * math.exp(ysq)
    if y <= 4.0:
        num = _C8 * y
        den = y
        for i in range(7):
            num = (num + _C[i]) * y
            den = (den + _D[i]) * y
        result = (num + _C[7]) / (den + _D[7])
    elif y >= _XHUGE:
        result = _SQRPI / y
    else:
        ysq = 1.0 / (y * y)
        num = _P5 * ysq
        den = ysq
        for i in range(4):
            num = (num + _P[i]) * ysq
            den = (den + _Q[i]) * ysq
        result = (_SQRPI - ysq * (num + _P4) / (den + _Q4)) / y
    if x < 0.0:
        if x < _XNEG:
            return math.inf
        # exp(x^2) as exp(a^2) exp((y - a)(y + a)) with a = y rounded down to 1/16: a^2 is
        # exact, so the large exponent carries no rounding error into the result.
        a = math.floor(16.0 * y) / 16.0
        result = 2.0 * math.exp(a * a) * math.exp((y - a) * (y + a)) - result
    return result


@njit(**JIT_OPTIONS)
def norm_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z * INV_SQRT_2)


@njit(**JIT_OPTIONS)
def log_norm_cdf(z: float) -> float:
    """ln Phi(z) for any z: through erfcx in the lower tail, where Phi itself underflows."""
    if z < -1.0:
        return math.log(0.5 * erfcx(-z * INV_SQRT_2)) - 0.5 * z * z
    return math.log1p(-0.5 * math.erfc(z * INV_SQRT_2))


# Wichura's AS241 (PPND16).
_AS241_A = (
    3.3871328727963666080e0,
    1.3314166789178437745e2,
    1.9715909503065514427e3,
    1.3731693765509461125e4,
    4.5921953931549871457e4,
    6.7265770927008700853e4,
    3.3430575583588128105e4,
    2.5090809287301226727e3,
)
_AS241_B = (
    1.0,
    4.2313330701600911252e1,
    6.8718700749205790830e2,
    5.3941960214247511077e3,
    2.1213794301586595867e4,
    3.9307895800092710610e4,
    2.8729085735721942674e4,
    5.2264952788528545610e3,
)
_AS241_C = (
    1.42343711074968357734e0,
    4.63033784615654529590e0,
    5.76949722146069140550e0,
    3.64784832476320460504e0,
    1.27045825245236838258e0,
    2.41780725177450611770e-1,
    2.27238449892691845833e-2,
    7.74545014278341407640e-4,
)
_AS241_D = (
    1.0,
    2.05319162663775882187e0,
    1.67638483018380384940e0,
    6.89767334985100004550e-1,
    1.48103976427480074590e-1,
    1.51986665636164571966e-2,
    5.47593808499534494600e-4,
    1.05075007164441684324e-9,
)
_AS241_E = (
    6.65790464350110377720e0,
    5.46378491116411436990e0,
    1.78482653991729133580e0,
    2.96560571828504891230e-1,
    2.65321895265761230930e-2,
    1.24266094738807843860e-3,
    2.71155556874348757815e-5,
    2.01033439929228813265e-7,
)
_AS241_F = (
    1.0,
    5.99832206555887937690e-1,
    1.36929880922735805310e-1,
    1.48753612908506148525e-2,
    7.86869131145613259100e-4,
    1.84631831751005468180e-5,
    1.42151175831644588870e-7,
    2.04426310338993978564e-15,
)


@njit(**JIT_OPTIONS)
def _ratio(num: tuple[float, ...], den: tuple[float, ...], r: float) -> float:
    p = num[7]
    d = den[7]
    for i in range(6, -1, -1):
        p = p * r + num[i]
        d = d * r + den[i]
    return p / d


@njit(**JIT_OPTIONS)
def norm_ppf(u: float) -> float:
    """Inverse of the normal CDF (scipy's ndtri): -inf at 0, +inf at 1, NaN outside."""
    if not (u > 0.0 and u < 1.0):
        if u == 0.0:
            return -math.inf
        if u == 1.0:
            return math.inf
        return math.nan
    q = u - 0.5
    if abs(q) <= 0.425:
        return q * _ratio(_AS241_A, _AS241_B, 0.180625 - q * q)
    r = math.sqrt(-math.log(u if q < 0.0 else 1.0 - u))
    if r > 5.0:
        return math.copysign(_ratio(_AS241_E, _AS241_F, r - 5.0), q)
    value = _ratio(_AS241_C, _AS241_D, r - 1.6)
    return -value if q < 0.0 else value
