"""High-precision (mpmath) checks on tiny prices and property tests of the inversion."""

import numpy as np
import pytest

from analytics.options import bsm_greeks, bsm_price, implied_volatility

mpmath = pytest.importorskip("mpmath")
hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

EPS = np.finfo(float).eps


def _mp_price(kind, spot, strike, expiry, rate, dividend, vol):
    mp = mpmath.mp
    with mp.workdps(60):
        s, k, t, r, q, v = (mp.mpf(float(a)) for a in (spot, strike, expiry, rate, dividend, vol))
        d1 = (mp.log(s / k) + (r - q + v * v / 2) * t) / (v * mp.sqrt(t))
        d2 = d1 - v * mp.sqrt(t)
        sign = 1 if kind == "call" else -1
        return sign * (
            s * mp.exp(-q * t) * mp.ncdf(sign * d1) - k * mp.exp(-r * t) * mp.ncdf(sign * d2)
        )


TINY = [
    # kind, spot, strike, expiry, rate, dividend, vol: out of the money, down to 1e-188
    ("call", 100, 101, 1 / 8760, -0.05, 0.0, 0.05),
    ("call", 100, 150, 0.1, 0.02, 0.0, 0.2),
    ("put", 100, 60, 0.25, 0.05, 0.01, 0.1),
    ("call", 100, 100.01, 1 / 8760, 0.0, 0.0, 0.001),
    ("put", 100, 99.999, 1 / 365, 0.0, 0.0, 0.002),
    ("call", 100, 400, 1.0, 0.2, 0.0, 0.1),
    ("call", 100, 100.5, 0.02, 0.0, 0.0, 0.004),
    ("put", 3000, 2000, 1 / 52, 0.0, 0.0, 0.1),
]


@pytest.mark.parametrize("case", TINY)
def test_tiny_prices_match_60_digit_arithmetic_and_invert_exactly(case):
    kind, spot, strike, expiry, rate, dividend, vol = case
    exact = _mp_price(*case)
    assert exact < 1e-2  # out of the money: the time value is the whole price
    price = bsm_price(kind, spot, strike, expiry, rate, dividend, vol)
    # The inputs' own rounding moves ln(F/K) by ~eps, which moves a price far out in the
    # wing by eps * h^2 relative (h = ln(F/K) / (sigma sqrt T)): that is the floor.
    h = float(mpmath.log(spot / strike) + (rate - dividend) * expiry) / (vol * np.sqrt(expiry))
    assert abs(price - float(exact)) <= 50 * EPS * (1 + h * h) * float(exact)
    implied = implied_volatility(kind, float(exact), spot, strike, expiry, rate, dividend)
    assert implied.reason == ""
    assert implied.volatility == pytest.approx(vol, rel=1e-12)


@hypothesis.settings(max_examples=400, deadline=None)
@hypothesis.given(
    kind=st.sampled_from(["call", "put"]),
    log_moneyness=st.floats(-3.0, 3.0),
    expiry=st.floats(1 / 8760, 10.0),
    rate=st.floats(-0.05, 0.2),
    dividend=st.floats(0.0, 0.1),
    vol=st.floats(0.001, 8.0),
)
def test_implied_volatility_inverts_any_well_posed_price(
    kind, log_moneyness, expiry, rate, dividend, vol
):
    strike = 100.0 * np.exp(log_moneyness)
    price = float(bsm_price(kind, 100.0, strike, expiry, rate, dividend, vol))
    result = implied_volatility(kind, price, 100.0, strike, expiry, rate, dividend)
    vega = float(bsm_greeks(kind, 100.0, strike, expiry, rate, dividend, vol).vega)
    condition = price / (vega * vol) if vega > 0 else np.inf
    if price > 1e-290 and condition * EPS < 1e-12:
        assert result.reason == ""
        assert abs(result.volatility / vol - 1) <= 1e-10
    elif result.reason == "":
        # Wherever a volatility is returned it reproduces the price.
        again = float(bsm_price(kind, 100.0, strike, expiry, rate, dividend, result.volatility))
        assert again == pytest.approx(price, rel=1e-12, abs=1e-300)
    else:
        assert np.isnan(result.volatility)
