"""The REST client: every ``/api/v1/`` endpoint, paging, retries and typed errors."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import httpx

from quantsaas_client._retry import RETRY_STATUSES, RetryPolicy, rate_limit_exhausted
from quantsaas_client._time import TimeLike, to_ms
from quantsaas_client._version import __version__
from quantsaas_client.backtests import Backtest, BacktestFailed
from quantsaas_client.errors import TransportError, api_error
from quantsaas_client.results import Record, Records, records_to_pandas

if TYPE_CHECKING:
    from quantsaas_client.stream import Stream, SyncStream

DEFAULT_URL = "http://127.0.0.1:8000"


class RecordList(list[Record]):
    """A fully read answer (options, a single page): a list with ``to_pandas()``."""

    def to_pandas(self, *, index: str | None = None) -> Any:
        return records_to_pandas(list(self), index=index)


def symbol_path(symbol: str) -> str:
    """``BTC/USDT`` (ccxt) or ``btc-usdt`` as the API's ``BTC-USDT``."""
    return symbol.replace("/", "-").upper()


def _params(**values: Any) -> dict[str, Any]:
    out = {}
    for name, value in values.items():
        if value is None:
            continue
        out[name] = to_ms(value) if name in ("start", "end") else value
    return out


class Client:
    """A QuantSaaS account over REST.

    ``api_key`` defaults to ``QUANTSAAS_API_KEY`` and ``base_url`` (the site's
    root) to ``QUANTSAAS_URL``. Use it as a context manager, or call
    ``close()``, to release its pooled connections.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_key = api_key or os.environ.get("QUANTSAAS_API_KEY") or None
        self.base_url = (base_url or os.environ.get("QUANTSAAS_URL") or DEFAULT_URL).rstrip("/")
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        headers = {"User-Agent": f"quantsaas-client/{__version__}", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self._http = http or httpx.Client(base_url=self.base_url, timeout=timeout)
        self._http.headers.update(headers)
        self._blocked_until = 0.0
        self.last_rate_limit: dict[str, str] = {}

    # --- plumbing -----------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _target(self, path_or_url: str) -> str:
        """A path under the base URL. A ``next`` link is followed by its path and query
        only: the key is never sent to a host other than the one configured, whatever
        a link (or a proxy rewriting it) says."""
        parts = urlsplit(path_or_url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> Any:
        """One API call with retries; the decoded JSON answer, or a typed exception.

        Retried: 429 always (the request was refused before it ran); 502, 503,
        504 and network errors only for idempotent calls, so a backtest is never
        submitted twice.
        """
        if idempotent is None:
            idempotent = method.upper() in ("GET", "HEAD", "DELETE", "PUT")
        url = self._target(path)
        attempt = 0
        while True:
            self._throttle()
            try:
                response = self._http.request(method, url, params=params, json=json)
            except httpx.TransportError as exc:
                # A refused connection never reached the server: safe to retry any call.
                retryable = idempotent or isinstance(exc, httpx.ConnectError)
                if not retryable or attempt >= self.retry.max_retries:
                    raise TransportError(f"{method} {url}: {exc!r}") from exc
                self._sleep(self.retry.backoff.delay(attempt))
                attempt += 1
                continue
            self._note_rate_limit(response.headers)
            status = response.status_code
            if status < 400:
                return response.json() if response.content else None
            retryable = status == 429 or (idempotent and status in RETRY_STATUSES)
            wait = (
                self.retry.wait_for(attempt, response.headers, status=status) if retryable else None
            )
            if wait is None:
                try:
                    body = response.json()
                except ValueError:
                    body = None
                raise api_error(status, body, response.headers)
            self._sleep(wait)
            attempt += 1

    def _note_rate_limit(self, headers: httpx.Headers) -> None:
        self.last_rate_limit = {
            k: v for k, v in headers.items() if k.lower().startswith("ratelimit")
        }
        if not self.retry.throttle:
            return
        reset = rate_limit_exhausted(headers)
        if reset is not None and reset <= self.retry.max_wait:
            self._blocked_until = time.monotonic() + reset

    def _throttle(self) -> None:
        """The last answer used the window's last request: wait for the reset rather
        than spend a request on a refusal."""
        wait = self._blocked_until - time.monotonic()
        self._blocked_until = 0.0
        if wait > 0:
            self._sleep(wait)

    def _get(self, path: str, **params: Any) -> Record:
        return self._record("GET", path, params=_params(**params))

    def _record(self, method: str, path: str, **kwargs: Any) -> Record:
        """`request` for the calls whose answer is one JSON object."""
        answer: Record = self.request(method, path, **kwargs)
        return answer

    def _list(self, path: str, *, max_records: int | None = None, **params: Any) -> Records:
        first = _params(**params)

        def fetch(next_url: str | None) -> dict[str, Any]:
            if next_url is None:
                return self._record("GET", path, params=first)
            return self._record("GET", next_url)

        return Records(fetch, limit=max_records)

    @staticmethod
    def _market(kind: str, exchange: str, symbol: str, what: str) -> str:
        market = f"{quote(exchange, safe='')}/{quote(symbol_path(symbol), safe='')}"
        return f"/api/v1/{kind}/{market}/{what}"

    # --- reference data -----------------------------------------------------------------
    def exchanges(self) -> Records:
        """Exchanges and their feed status."""
        return self._list("/api/v1/exchanges")

    def instruments(self, exchange: str | None = None) -> Records:
        return self._list("/api/v1/instruments", exchange=exchange)

    # --- market data --------------------------------------------------------------------
    def ticker(self, exchange: str, symbol: str) -> Record:
        return self._get(self._market("markets", exchange, symbol, "ticker"))

    def trades(
        self,
        exchange: str,
        symbol: str,
        *,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        page_size: int | None = None,
        max_records: int | None = None,
    ) -> Records:
        """Trades oldest first, every page of ``[start, end)`` (times: ms, ISO 8601,
        datetime, or a duration ago such as ``"1h"``)."""
        return self._list(
            self._market("markets", exchange, symbol, "trades"),
            start=start,
            end=end,
            limit=page_size,
            max_records=max_records,
        )

    def candles(
        self,
        exchange: str,
        symbol: str,
        *,
        interval: str = "1m",
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        page_size: int | None = None,
        max_records: int | None = None,
    ) -> Records:
        """OHLCV candles; intervals 1m 5m 15m 1h 4h 1d."""
        return self._list(
            self._market("markets", exchange, symbol, "candles"),
            interval=interval,
            start=start,
            end=end,
            limit=page_size,
            max_records=max_records,
        )

    def book(self, exchange: str, symbol: str, *, depth: int | None = None) -> Record:
        """The latest L2 book: ``bids`` and ``asks`` as ``[price, size]``."""
        return self._get(self._market("markets", exchange, symbol, "book"), depth=depth)

    # --- consolidated market data (one pair across venues) ------------------------------
    @staticmethod
    def _consolidated(pair: str, what: str) -> str:
        return f"/api/v1/markets/consolidated/{quote(symbol_path(pair), safe='')}/{what}"

    def consolidated_bbo(self, pair: str) -> Record:
        """Best bid and ask across venues: ``bid``, ``bid_size``, ``bid_venue``, ``ask``,
        ``ask_size``, ``ask_venue``, the ``venues`` included and ``ts``. ``NotFound`` for
        a pair no venue offers, or one nothing has been consolidated for yet."""
        return self._get(self._consolidated(pair, "bbo"))

    def consolidated_book(self, pair: str, *, depth: int | None = None) -> Record:
        """The merged L2 book across venues: ``bids`` and ``asks`` as
        ``[price, total_size, {venue: size}]``, best first, and the ``venues`` included."""
        return self._get(self._consolidated(pair, "book"), depth=depth)

    # --- analytics ----------------------------------------------------------------------
    def ofi(
        self,
        exchange: str,
        symbol: str,
        *,
        interval: str | None = None,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        page_size: int | None = None,
    ) -> Records:
        """Order-flow imbalance series."""
        return self._list(
            self._market("analytics", exchange, symbol, "ofi"),
            interval=interval,
            start=start,
            end=end,
            limit=page_size,
        )

    def vpin(
        self,
        exchange: str,
        symbol: str,
        *,
        bucket_volume: float | None = None,
        window: int | None = None,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        page_size: int | None = None,
    ) -> Records:
        """VPIN series; ``meta`` says the bucket volume, window and source used."""
        return self._list(
            self._market("analytics", exchange, symbol, "vpin"),
            bucket_volume=bucket_volume,
            window=window,
            start=start,
            end=end,
            limit=page_size,
        )

    def volatility(
        self,
        exchange: str,
        symbol: str,
        *,
        estimator: str | None = None,
        interval: str | None = None,
        window: int | None = None,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        page_size: int | None = None,
    ) -> Records:
        """Realised volatility (annualised, decimal); ``meta`` names the estimator."""
        return self._list(
            self._market("analytics", exchange, symbol, "volatility"),
            estimator=estimator,
            interval=interval,
            window=window,
            start=start,
            end=end,
            limit=page_size,
        )

    # --- options ------------------------------------------------------------------------
    def price_options(self, options: Sequence[Mapping[str, Any]]) -> RecordList:
        """Black-Scholes-Merton prices and greeks for a batch; a bad row carries ``error``."""
        body = self.request(
            "POST", "/api/v1/options/price", json={"options": list(options)}, idempotent=True
        )
        return RecordList(body["data"])

    def option_price(
        self,
        type: str,
        *,
        spot: float,
        strike: float,
        expiry: float,
        volatility: float,
        rate: float = 0.0,
        dividend_yield: float = 0.0,
    ) -> Record:
        """One option's price and greeks (expiry in years, rates and vol as decimals)."""
        option = {
            "type": type,
            "spot": spot,
            "strike": strike,
            "expiry": expiry,
            "volatility": volatility,
            "rate": rate,
            "dividend_yield": dividend_yield,
        }
        return self.price_options([option])[0]

    def implied_volatilities(self, options: Sequence[Mapping[str, Any]]) -> RecordList:
        """Implied volatility per option: ``volatility`` or null with a ``reason``."""
        body = self.request(
            "POST",
            "/api/v1/options/implied-volatility",
            json={"options": list(options)},
            idempotent=True,
        )
        return RecordList(body["data"])

    def implied_volatility(
        self,
        type: str,
        *,
        spot: float,
        strike: float,
        expiry: float,
        price: float,
        rate: float = 0.0,
        dividend_yield: float = 0.0,
    ) -> float | None:
        """One option's implied volatility, or None when no volatility gives that price."""
        option = {
            "type": type,
            "spot": spot,
            "strike": strike,
            "expiry": expiry,
            "price": price,
            "rate": rate,
            "dividend_yield": dividend_yield,
        }
        volatility: float | None = self.implied_volatilities([option])[0]["volatility"]
        return volatility

    # --- backtests ----------------------------------------------------------------------
    def submit_backtest(
        self,
        *,
        exchange: str,
        symbol: str,
        strategy: str,
        start: TimeLike,
        end: TimeLike | None = None,
        interval: str = "1h",
        params: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Backtest:
        """Queue a backtest (strategies: sma_crossover, momentum, mean_reversion);
        ``options`` are the other request fields, e.g. ``fee_bp``."""
        body = {
            "exchange": exchange,
            "symbol": symbol_path(symbol),
            "strategy": strategy,
            "interval": interval,
            "params": dict(params or {}),
            **_params(start=start, end=end),
            **options,
        }
        return Backtest.from_api(self.request("POST", "/api/v1/backtests", json=body))

    def backtest(self, backtest_id: int) -> Backtest:
        return Backtest.from_api(self._get(f"/api/v1/backtests/{int(backtest_id)}"))

    def backtests(self, *, max_records: int | None = None) -> Records:
        """The organization's backtests, newest first."""
        return self._list("/api/v1/backtests", max_records=max_records)

    def wait_backtest(
        self,
        backtest: Backtest | int,
        *,
        poll: float = 1.0,
        timeout: float | None = None,
        on_progress: Callable[[Backtest], None] | None = None,
    ) -> Backtest:
        """Poll until the backtest finishes; ``on_progress`` sees every poll.

        Raises ``BacktestFailed`` (carrying the backtest) if it failed and
        ``TimeoutError`` after ``timeout`` seconds.
        """
        backtest_id = backtest.id if isinstance(backtest, Backtest) else int(backtest)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self.backtest(backtest_id)
            if on_progress is not None:
                on_progress(current)
            if current.status == "failed":
                raise BacktestFailed(current)
            if current.done:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"backtest {backtest_id} still {current.status} after {timeout}s"
                )
            self._sleep(poll)

    def run_backtest(
        self,
        *,
        poll: float = 1.0,
        timeout: float | None = None,
        on_progress: Callable[[Backtest], None] | None = None,
        **request: Any,
    ) -> Backtest:
        """Submit and wait: the finished backtest with its ``result``."""
        submitted = self.submit_backtest(**request)
        return self.wait_backtest(submitted, poll=poll, timeout=timeout, on_progress=on_progress)

    # --- account ------------------------------------------------------------------------
    def api_keys(self) -> Records:
        return self._list("/api/v1/keys")

    def create_api_key(
        self,
        *,
        name: str = "",
        expires_at: TimeLike | None = None,
        scopes: Sequence[str] | None = None,
    ) -> Record:
        """A new key; its ``key`` is in this answer only."""
        body: dict[str, Any] = {"name": name}
        if expires_at is not None:
            body["expires_at"] = to_ms(expires_at)
        if scopes is not None:
            body["scopes"] = list(scopes)
        return self._record("POST", "/api/v1/keys", json=body)

    def revoke_api_key(self, key_id: int) -> None:
        self.request("DELETE", f"/api/v1/keys/{int(key_id)}")

    # --- alerts -------------------------------------------------------------------------
    def alerts(self) -> Records:
        """The organization's alert rules."""
        return self._list("/api/v1/alerts")

    def create_alert(self, *, kind: str, exchange: str, **fields: Any) -> Record:
        """A new alert rule. ``fields``: symbol, direction ("above"/"below"), threshold,
        window_seconds, cooldown_seconds, name, email, webhook_url, enabled."""
        body = {"kind": kind, "exchange": exchange, **fields}
        return self._record("POST", "/api/v1/alerts", json=body)

    def alert(self, alert_id: int) -> Record:
        """One alert rule (``NotFound`` for an id outside the organization)."""
        return self._get(f"/api/v1/alerts/{int(alert_id)}")

    def update_alert(self, alert_id: int, **fields: Any) -> Record:
        """Change only the ``fields`` given (those of ``create_alert``); the rule as now
        stored. ``update_alert(rule_id, enabled=False)`` disables a rule, ``enabled=True``
        enables it again."""
        # Idempotent: the same fields sent twice leave the same rule.
        return self._record(
            "PATCH", f"/api/v1/alerts/{int(alert_id)}", json=fields, idempotent=True
        )

    def delete_alert(self, alert_id: int) -> None:
        self.request("DELETE", f"/api/v1/alerts/{int(alert_id)}")

    def alert_deliveries(self, *, rule: int | None = None, limit: int | None = None) -> Records:
        """The delivery log, newest first: each email and webhook of recent firings with its
        ``status`` (pending, retrying, delivered, failed), ``attempts`` and the ``firing``.
        ``rule`` keeps one rule's; ``limit`` is 1-500 (default 100)."""
        return self._list("/api/v1/alerts/deliveries", rule=rule, limit=limit)

    def webhook_secret(self) -> str:
        """The key of the webhooks' ``QuantSaaS-Signature`` (HMAC-SHA256), created on first
        read. Owners and admins only; a key needs the ``admin`` scope."""
        secret: str = self._get("/api/v1/alerts/webhook-secret")["secret"]
        return secret

    def rotate_webhook_secret(self) -> str:
        """Replace the webhook signing secret and return the new one, which signs the
        webhooks sent from then on."""
        # Not retried after a lost answer: a second rotation would replace the secret the
        # caller never saw.
        secret: str = self._record("POST", "/api/v1/alerts/webhook-secret")["secret"]
        return secret

    def usage(self) -> Record:
        """This period's usage against the plan's limits."""
        return self._get("/api/v1/usage")

    def schema(self) -> Record:
        """The OpenAPI 3 document."""
        return self._record("GET", "/api/v1/schema/", params={"format": "json"})

    def asyncapi(self) -> Record:
        """The AsyncAPI document of the WebSocket stream."""
        return self._get("/api/v1/asyncapi.json")

    def health(self) -> Record:
        """``/healthz``: liveness of the service."""
        return self._get("/healthz")

    # --- stream -------------------------------------------------------------------------
    @property
    def ws_url(self) -> str:
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/ws/v1/stream"

    def stream(self, channels: Sequence[str], **options: Any) -> Stream:
        """An asyncio stream of ``channels`` with this client's key (see ``Stream``)."""
        from quantsaas_client.stream import Stream

        return Stream(channels, api_key=self.api_key, url=self.ws_url, **options)

    def stream_sync(self, channels: Sequence[str], **options: Any) -> SyncStream:
        """The same stream for scripts and notebooks: a plain iterator."""
        from quantsaas_client.stream import SyncStream

        return SyncStream(self.stream(channels, **options))
