"""A backtest as the API reports it: queued, running (with progress), succeeded or failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quantsaas_client.errors import QuantSaaSError
from quantsaas_client.results import records_to_pandas


@dataclass(frozen=True)
class Backtest:
    id: int
    status: str
    progress: float
    strategy: str
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    created_at: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    url: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Backtest:
        return cls(
            id=int(body["id"]),
            status=body["status"],
            progress=float(body.get("progress") or 0.0),
            strategy=body.get("strategy", ""),
            params=dict(body.get("params") or {}),
            result=body.get("result"),
            error=body.get("error"),
            created_at=body.get("created_at"),
            started_at=body.get("started_at"),
            finished_at=body.get("finished_at"),
            url=body.get("url"),
            raw=body,
        )

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed")

    @property
    def metrics(self) -> dict[str, Any]:
        return dict((self.result or {}).get("metrics") or {})

    def equity_to_pandas(self) -> Any:
        """The equity curve as a DataFrame indexed by UTC time (needs pandas)."""
        points = (self.result or {}).get("equity") or []
        return records_to_pandas([{"ts": ts, "equity": equity} for ts, equity in points])


class BacktestFailed(QuantSaaSError):
    def __init__(self, backtest: Backtest) -> None:
        super().__init__(f"backtest {backtest.id} failed: {backtest.error}")
        self.backtest = backtest
