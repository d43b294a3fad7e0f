"""The compiled (numba) option kernels against the numpy implementation they replace."""

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from analytics import options
from analytics.options import bsm_price, implied_volatility

pytest.importorskip("numba")
black_jit = pytest.importorskip("analytics.black_jit")

EPS = np.finfo(float).eps


def _book(n, seed):
    rng = np.random.default_rng(seed)
    spot = rng.uniform(10, 1000, n)
    return {
        "kind": np.where(rng.random(n) < 0.5, "call", "put"),
        "spot": spot,
        "strike": spot * np.exp(rng.normal(0, 0.5, n)),
        "expiry": np.exp(rng.uniform(np.log(1 / 8760), np.log(10), n)),
        "rate": rng.uniform(-0.05, 0.2, n),
        "dividend_yield": rng.uniform(0, 0.1, n),
    }


@pytest.fixture
def numpy_only(monkeypatch):
    """Runs the block with the pure numpy implementation, as on a machine without numba."""

    def run(function, *args, **kwargs):
        with monkeypatch.context() as patch:
            patch.setattr(options, "_compiled_kernels", False)
            return function(*args, **kwargs)

    return run


def test_compiled_prices_agree_with_the_numpy_implementation(numpy_only):
    book = _book(50_000, 3)
    vol = np.exp(np.random.default_rng(4).uniform(np.log(0.001), np.log(8), 50_000))
    compiled = bsm_price(volatility=vol, **book)
    reference = numpy_only(bsm_price, volatility=vol, **book)
    assert options._kernels() is black_jit
    tiny = reference < 1e-290
    with np.errstate(divide="ignore", invalid="ignore"):
        assert (np.abs(compiled / reference - 1)[~tiny] <= 1e-12).all()
    assert (np.abs(compiled - reference)[tiny] <= 1e-300).all()


def test_compiled_implied_volatilities_agree_and_give_the_same_reasons(numpy_only):
    book = _book(50_000, 5)
    vol = np.exp(np.random.default_rng(6).uniform(np.log(0.001), np.log(8), 50_000))
    price = bsm_price(volatility=vol, **book)
    price[:2000] *= np.random.default_rng(7).uniform(0.5, 1.5, 2000)  # some impossible ones
    kind = book.pop("kind")
    compiled = implied_volatility(kind, price, **book)
    reference = numpy_only(implied_volatility, kind, price, **book)
    assert (compiled.reason == reference.reason).all()
    assert set(np.unique(compiled.reason)) >= {"", "below_intrinsic", "above_upper_bound"}
    found = compiled.reason == ""
    assert np.isnan(compiled.volatility[~found]).all()
    # Both reproduce the price; where it pins the volatility down, they agree to the digit.
    again = bsm_price(
        kind[found], volatility=compiled.volatility[found], **{k: v[found] for k, v in book.items()}
    )
    assert np.allclose(again, price[found], rtol=1e-11, atol=1e-300)
    agree = np.abs(compiled.volatility[found] / reference.volatility[found] - 1)
    assert np.median(agree) <= 4 * EPS


def _ulps_away(values, k):
    for _ in range(abs(k)):
        values = np.nextafter(values, math.copysign(np.inf, k))
    return values


def test_prices_on_the_bounds_get_the_same_reason_from_both_paths(numpy_only):
    # Prices within two ulps of the intrinsic value and of the upper bound, each bound formed
    # with numpy's exp and with the C library's (they differ in the last bit for a few percent
    # of arguments on CPUs with AVX-512): wherever a price falls, both give the same reason.
    book = _book(4000, 9)
    kind = book.pop("kind")
    spot, strike = book["spot"], book["strike"]
    t, r, q = book["expiry"], book["rate"], book["dividend_yield"]
    sign = np.where(kind == "call", 1.0, -1.0)
    bounds = []
    for exp in (np.exp, np.vectorize(math.exp)):
        carried, discounted = spot * exp(-q * t), strike * exp(-r * t)
        bounds.append(np.maximum(sign * (carried - discounted), 0.0))
        bounds.append(np.where(sign > 0, carried, discounted))
    price = np.concatenate([_ulps_away(b, k) for b in bounds for k in range(-2, 3)])
    copies = price.size // kind.size
    kind, book = np.tile(kind, copies), {k: np.tile(v, copies) for k, v in book.items()}
    compiled = implied_volatility(kind, price, **book)
    reference = numpy_only(implied_volatility, kind, price, **book)
    assert (compiled.reason == reference.reason).all()
    assert set(np.unique(compiled.reason)) == {
        "",
        "below_intrinsic",
        "no_time_value",
        "above_upper_bound",
    }


def test_a_price_at_intrinsic_value_from_either_path_is_never_below_it_in_the_other(numpy_only):
    book = _book(20_000, 10)
    kind = book.pop("kind")
    for vol in (0.0, 1e-3):  # at 1e-3 deep in-the-money time values are below the last bit
        compiled_price = bsm_price(kind, volatility=vol, **book)
        numpy_price = numpy_only(bsm_price, kind, volatility=vol, **book)
        for price in (compiled_price, numpy_price):
            compiled = implied_volatility(kind, price, **book)
            reference = numpy_only(implied_volatility, kind, price, **book)
            assert (compiled.reason == reference.reason).all()
            assert not (compiled.reason == "below_intrinsic").any()
            if vol == 0.0:
                assert (compiled.reason == "no_time_value").all()


def test_scalar_and_broadcast_inputs_need_no_copies_and_give_the_same_answer(numpy_only):
    strikes = np.linspace(50, 150, 30_001)  # above the threshold of the parallel loop
    compiled = bsm_price("put", 100.0, strikes, 0.25, 0.01, 0.0, 0.3)
    assert compiled.shape == strikes.shape
    reference = numpy_only(bsm_price, "put", 100.0, strikes, 0.25, 0.01, 0.0, 0.3)
    np.testing.assert_allclose(compiled, reference, rtol=1e-13)
    back = implied_volatility("put", compiled, 100.0, strikes, 0.25, 0.01, 0.0)
    np.testing.assert_allclose(back.volatility, 0.3, rtol=1e-12)


def test_concurrent_callers_get_correct_answers_without_crashing_the_process():
    # Two threads launching numba's parallel loops at once would abort the interpreter;
    # concurrent callers must fall back to the serial loop and still be right.
    book = _book(60_000, 8)
    vol = np.full(60_000, 0.4)
    expected = bsm_price(volatility=vol, **book)
    kind = book.pop("kind")
    alone = implied_volatility(kind, expected, **book)
    with ThreadPoolExecutor(max_workers=4) as pool:
        prices = list(pool.map(lambda _: bsm_price(kind, volatility=vol, **book), range(8)))
        implied = list(pool.map(lambda p: implied_volatility(kind, p, **book), prices[:4]))
    for price in prices:
        assert np.array_equal(price, expected)
    for result in implied:
        assert np.array_equal(result.volatility, alone.volatility, equal_nan=True)
        assert (result.reason == alone.reason).all()
    ok = alone.reason == ""
    assert ok.mean() > 0.5 and np.median(np.abs(alone.volatility[ok] / 0.4 - 1)) < 1e-14


def test_kind_arrays_are_validated_by_the_compiled_path_too():
    with pytest.raises(ValueError):
        bsm_price(np.array(["call", "puts"]), 100, 100, 1, 0, 0, 0.2)
    with pytest.raises(ValueError):
        implied_volatility(np.array(["call", "Put"]), 5.0, 100, 100, 1, 0, 0)
