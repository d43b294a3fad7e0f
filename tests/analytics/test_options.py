"""Black-Scholes-Merton prices, greeks and implied volatility."""

import numpy as np
import pytest

from analytics.options import bsm_greeks, bsm_price, implied_volatility

EPS = np.finfo(float).eps
HULL = {"spot": 42.0, "strike": 40.0, "expiry": 0.5, "rate": 0.10, "dividend_yield": 0.0}


def test_textbook_prices_and_the_api_example_greeks():
    assert bsm_price("call", volatility=0.2, **HULL) == pytest.approx(4.7594, abs=5e-5)
    assert bsm_price("put", volatility=0.2, **HULL) == pytest.approx(0.8086, abs=5e-5)
    greeks = bsm_greeks("call", volatility=0.2, **HULL)
    assert greeks.delta == pytest.approx(0.7791, abs=5e-5)
    assert greeks.gamma == pytest.approx(0.0500, abs=5e-5)
    assert greeks.vega == pytest.approx(8.813, abs=5e-4)
    assert greeks.theta == pytest.approx(-4.559, abs=5e-4)
    assert greeks.rho == pytest.approx(13.982, abs=5e-4)


def _random_book(n, seed):
    rng = np.random.default_rng(seed)
    return {
        "spot": rng.uniform(10, 1000, n),
        "strike": None,
        "expiry": np.exp(rng.uniform(np.log(1 / 8760), np.log(10), n)),
        "rate": rng.uniform(-0.05, 0.2, n),
        "dividend_yield": rng.uniform(0, 0.1, n),
        "volatility": np.exp(rng.uniform(np.log(0.01), np.log(3), n)),
        "moneyness": np.exp(rng.normal(0, 0.4, n)),
    }


def test_put_call_parity_holds_to_rounding():
    book = _random_book(20_000, 1)
    s, t, r, q, v = (book[k] for k in ("spot", "expiry", "rate", "dividend_yield", "volatility"))
    k = s * book["moneyness"]
    call = bsm_price("call", s, k, t, r, q, v)
    put = bsm_price("put", s, k, t, r, q, v)
    forward_value = s * np.exp(-q * t) - k * np.exp(-r * t)
    assert (np.abs((call - put) - forward_value) <= 4 * EPS * (s + k)).all()


def test_greeks_match_finite_differences():
    book = _random_book(2000, 2)
    s, t, r, q, v = (book[k] for k in ("spot", "expiry", "rate", "dividend_yield", "volatility"))
    t = np.maximum(t, 0.02)
    k = s * book["moneyness"]
    kind = np.where(np.arange(s.size) % 2 == 0, "call", "put")
    g = bsm_greeks(kind, s, k, t, r, q, v)

    def price(**change):
        args = {"spot": s, "strike": k, "expiry": t, "rate": r, "dividend_yield": q}
        args.update(volatility=v)
        args.update(change)
        return bsm_price(kind, **args)

    # Steps on each input's natural scale, so truncation and rounding stay small together.
    hs, hv, ht, hr = 1e-4 * s * v * np.sqrt(t), 1e-4 * v, 1e-4 * t, 1e-6
    delta = (price(spot=s + hs) - price(spot=s - hs)) / (2 * hs)
    # Gamma as the slope of delta (itself checked against prices above): a second difference
    # of prices would drown in rounding for in-the-money options.
    up = bsm_greeks(kind, s + hs, k, t, r, q, v).delta
    down = bsm_greeks(kind, s - hs, k, t, r, q, v).delta
    gamma = (up - down) / (2 * hs)
    vega = (price(volatility=v + hv) - price(volatility=v - hv)) / (2 * hv)
    # Theta is the change as calendar time passes, i.e. as the expiry shrinks.
    theta = -(price(expiry=t + ht) - price(expiry=t - ht)) / (2 * ht)
    rho = (price(rate=r + hr) - price(rate=r - hr)) / (2 * hr)

    def close(actual, expected, rtol, atol):
        # atol scales with the spot: a 1e-8 slip on a 1000-dollar option is rounding.
        bad = np.abs(actual - expected) > rtol * np.abs(expected) + atol * s
        assert not bad.any(), (actual[bad][:5], expected[bad][:5])

    close(g.delta, delta, 1e-6, 1e-9)
    close(g.gamma, gamma, 1e-6, 1e-11)
    close(g.vega, vega, 1e-6, 1e-9)
    close(g.theta, theta, 1e-5, 1e-9)
    close(g.rho, rho, 1e-6, 1e-9)


def _hard_grid():
    """Strikes 0.05x..20x spot, expiries 1 h..10 y, vols 0.1 %..800 %, rates -5 %..20 %."""
    strikes = 100 * np.exp(np.linspace(np.log(0.05), np.log(20), 41))
    expiries = np.array([1 / 8760, 1 / 365, 0.02, 0.1, 0.5, 1, 3, 10])
    vols = np.exp(np.linspace(np.log(0.001), np.log(8), 31))
    rates = np.array([-0.05, 0.0, 0.05, 0.2])
    dividends = np.array([0.0, 0.03])
    kinds = np.array(["call", "put"])
    return np.meshgrid(strikes, expiries, vols, rates, dividends, kinds, indexing="ij")


def test_implied_volatility_round_trip_over_the_hard_grid(capsys):
    k, t, v, r, q, kind = _hard_grid()
    spot = 100.0
    price = bsm_price(kind, spot, k, t, r, q, v)
    result = implied_volatility(kind, price, spot, k, t, r, q)
    vega = bsm_greeks(kind, spot, k, t, r, q, v).vega
    found = result.reason == ""
    assert np.isnan(result.volatility[~found]).all()
    assert np.isfinite(result.volatility[found]).all()

    error = np.abs(result.volatility / v - 1)
    # A price carries a relative rounding error of about eps, which moves the volatility by
    # eps * price / (vega * sigma): that is all the input can determine. Denormal prices
    # carry fewer digits still, so only normal ones are held to the bound.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        condition = np.maximum(price / (vega * v), 1.0)
    normal = found & (price > 1e-290)
    well_posed = normal & (condition * EPS < 1e-12)
    assert well_posed.sum() > 50_000
    worst = error[well_posed].max()
    with capsys.disabled():
        print(f"\nIV round trip: {well_posed.sum()} well-posed options, max rel error {worst:.2e}")
    assert worst <= 1e-10
    assert (error[normal] <= 1e3 * EPS * condition[normal]).all()

    # Options that were not inverted are the ones whose price carries no time value.
    missing = ~found & np.isfinite(price)
    tv = price - np.maximum(
        np.where(kind == "call", 1, -1) * (spot * np.exp(-q * t) - k * np.exp(-r * t)), 0
    )
    assert (result.reason[missing & (tv <= 0)] != "").all()
    reasons = set(np.unique(result.reason[missing]))
    assert reasons <= {"no_time_value", "above_upper_bound"}


def test_deep_out_of_the_money_one_hour_option_keeps_full_accuracy():
    price = bsm_price("call", 100, 101, 1 / 8760, -0.05, 0.0, 0.05)
    assert 0 < price < 1e-50
    vol = implied_volatility("call", price, 100, 101, 1 / 8760, -0.05, 0.0).volatility
    assert vol == pytest.approx(0.05, rel=1e-13)


def test_prices_without_a_volatility_get_nan_and_a_reason():
    intrinsic_put = 40 * np.exp(-0.1 * 0.5) - 42
    result = implied_volatility(
        ["call", "call", "put", "call", "call", "put"],
        [1.0, 42.0, 50.0, 4.0, 2.0 + 1e-9, 1.0],
        42.0,
        [40.0, 40.0, 40.0, 40.0, 40.0, 40.0],
        [0.5, 0.5, 0.5, 0.0, 0.5, 0.5],
        0.10,
        0.0,
    )
    assert result.reason.tolist() == [
        "below_intrinsic",  # intrinsic value is 42 - 40 e^{-0.05} = 3.95
        "above_upper_bound",  # a call cannot be worth the spot
        "above_upper_bound",  # a put cannot be worth the discounted strike
        "no_time_value",  # expired
        "below_intrinsic",
        "",
    ]
    assert np.isnan(result.volatility[:5]).all()
    assert intrinsic_put < 0 and result.volatility[5] > 0


def test_a_price_equal_to_intrinsic_value_has_no_time_value():
    price = bsm_price("call", 42, 40, 0.5, 0.1, 0, 0.0)
    result = implied_volatility("call", price, 42, 40, 0.5, 0.1, 0)
    assert result.reason == "no_time_value" and np.isnan(result.volatility)


def test_inputs_broadcast_and_kind_may_be_an_array():
    strikes = np.array([[90.0], [100.0], [110.0]])
    vols = np.array([0.1, 0.2, 0.4, 0.8])
    kinds = np.array([["call"], ["put"], ["call"]])
    prices = bsm_price(kinds, 100.0, strikes, 0.25, 0.01, 0.0, vols)
    assert prices.shape == (3, 4)
    back = implied_volatility(kinds, prices, 100.0, strikes, 0.25, 0.01, 0.0)
    assert back.volatility.shape == back.reason.shape == (3, 4)
    np.testing.assert_allclose(back.volatility, np.broadcast_to(vols, (3, 4)), rtol=1e-12)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        bsm_price("straddle", 100, 100, 1, 0, 0, 0.2)
