"""Integrity checks ccxt.pro does not make for us, as thin subclasses of its exchanges.

ccxt parses the wire; these classes only watch it. Each records what it finds
on the instance (``integrity_error``) and :class:`CcxtFeedClient` turns that
into the recovery the stream code already knows (``BookOutOfSync``: a fresh
connection and snapshot; for trades a reconnect, which repairs the gap).

- Coinbase numbers every message of a websocket connection (``sequence_num``,
  all channels together); ccxt ignores it. A jump means a message was lost, so
  the book (or the trade tape) on that connection can no longer be trusted.
- Kraken (websocket v2) sends a CRC32 of the top 10 levels with every book
  message. ccxt's own check is off by default and, in Python, cannot run on the
  float levels its JSON parser produces; we compute Kraken's documented checksum
  from the levels and the market's price and size decimals on every message.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import ccxt.pro as ccxtpro

CHECKSUM_LEVELS = 10


# ccxt ships no type information: its exchange classes are Any to mypy.
class CoinbaseSequenced(ccxtpro.coinbase):  # type: ignore[misc]
    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config or {})
        self.integrity_error: str | None = None
        self._sequence: dict[str, int] = {}

    # `client` is ccxt's websocket Client; `message` the parsed JSON, as ccxt hands it on.
    def handle_message(self, client: Any, message: object) -> None:
        sequence = message.get("sequence_num") if isinstance(message, dict) else None
        if isinstance(sequence, int):
            expected = self._sequence.get(client.url)
            if expected is not None and sequence != expected and self.integrity_error is None:
                self.integrity_error = f"sequence_num {sequence}, expected {expected}"
            self._sequence[client.url] = sequence + 1
        super().handle_message(client, message)


class KrakenChecksummed(ccxtpro.kraken):  # type: ignore[misc]  # untyped ccxt, as above
    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config or {})
        self.integrity_error: str | None = None

    def handle_order_book(self, client: Any, message: dict[str, Any]) -> None:
        super().handle_order_book(client, message)
        data = (message.get("data") or [{}])[0]
        symbol, expected = data.get("symbol"), data.get("checksum")
        book = self.orderbooks.get(symbol) if symbol else None
        if book is None or expected is None or self.integrity_error is not None:
            return
        market = self.market(symbol)
        actual = kraken_book_checksum(
            asks=book["asks"][:CHECKSUM_LEVELS],
            bids=book["bids"][:CHECKSUM_LEVELS],
            price_decimals=decimals(market["precision"]["price"]),
            size_decimals=decimals(market["precision"]["amount"]),
        )
        if actual != int(expected):
            self.integrity_error = f"book checksum {expected}, computed {actual}"


VENUE_CLASSES = {"coinbase": CoinbaseSequenced, "kraken": KrakenChecksummed}


def decimals(step: float | str | None) -> int:
    """Digits after the point of a tick or lot size (0.1 -> 1, 1e-08 -> 8)."""
    if step is None:
        return 8
    exponent = Decimal(str(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def _checksum_part(value: float, places: int) -> str:
    return f"{value:.{places}f}".replace(".", "").lstrip("0")


def kraken_book_checksum(
    *,
    asks: Sequence[Sequence[float]],
    bids: Sequence[Sequence[float]],
    price_decimals: int,
    size_decimals: int,
) -> int:
    """Kraken's book CRC32: top asks (best first) then top bids, each level as price and
    size printed with the pair's decimals, the point removed and leading zeros stripped."""
    text = "".join(
        _checksum_part(price, price_decimals) + _checksum_part(size, size_decimals)
        for price, size, *_ in [*asks, *bids]
    )
    return zlib.crc32(text.encode())


def synthetic_trade_id(
    *, exchange: str, symbol: str, ts: int, price: str, size: str, side: str, occurrence: int
) -> str:
    """A stable id for a trade the venue printed without one.

    Two prints identical in every field are told apart by `occurrence`, their
    order among such twins, so ON CONFLICT (instrument, trade_id) never merges
    distinct trades, while the same trade seen live and again through REST gets
    the same id and is stored once.
    """
    key = f"{exchange}|{symbol}|{ts}|{price}|{size}|{side}|{occurrence}"
    return "x" + hashlib.sha256(key.encode()).hexdigest()[:31]
