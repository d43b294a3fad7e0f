"""QuantSaaS client: REST (``Client``), the live stream (``Stream``) and the ``quantsaas`` CLI.

Quick start::

    from quantsaas_client import Client

    client = Client()  # QUANTSAAS_API_KEY and QUANTSAAS_URL from the environment
    for trade in client.trades("binance", "BTC-USDT", start="1h"):
        ...
"""

from quantsaas_client._retry import Backoff, RetryPolicy
from quantsaas_client._version import __version__
from quantsaas_client.backtests import Backtest, BacktestFailed
from quantsaas_client.errors import (
    APIError,
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    PlanRequired,
    QuantSaaSError,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    StreamAuthenticationFailed,
    StreamClosed,
    StreamError,
    StreamPlanRequired,
    TransportError,
)
from quantsaas_client.rest import Client, RecordList
from quantsaas_client.results import Records
from quantsaas_client.stream import (
    ChecksumMismatch,
    Gap,
    Heartbeat,
    Lagged,
    OrderBook,
    Other,
    Pong,
    Reconnecting,
    ResumeUnavailable,
    Snapshot,
    Stream,
    StreamErrorFrame,
    Subscribed,
    SyncStream,
    Unsubscribed,
    Update,
    Welcome,
)

__all__ = [
    "APIError",
    "AuthenticationFailed",
    "Backoff",
    "Backtest",
    "BacktestFailed",
    "ChecksumMismatch",
    "Client",
    "Gap",
    "Heartbeat",
    "InvalidRequest",
    "Lagged",
    "NotFound",
    "OrderBook",
    "Other",
    "PermissionDenied",
    "PlanRequired",
    "Pong",
    "QuantSaaSError",
    "RateLimited",
    "Reconnecting",
    "RecordList",
    "Records",
    "ResumeUnavailable",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "Snapshot",
    "Stream",
    "StreamAuthenticationFailed",
    "StreamClosed",
    "StreamError",
    "StreamErrorFrame",
    "StreamPlanRequired",
    "Subscribed",
    "SyncStream",
    "TransportError",
    "Unsubscribed",
    "Update",
    "Welcome",
    "__version__",
]
