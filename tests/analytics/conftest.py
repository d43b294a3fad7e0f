"""What the analytics API tests share: the simulated market and the error assertion."""

from __future__ import annotations

import pytest

from marketdata.models import Instrument


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


@pytest.fixture
def btc(db) -> Instrument:
    return Instrument.objects.get(exchange_id="sim", symbol="BTC-USD")
