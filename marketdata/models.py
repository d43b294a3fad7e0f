"""Market data: exchanges, instruments, trades, 1-minute candles, book snapshots, tickers.

Market data is global (not tenant data): every organization reads the same tape; what
an organization may read is decided by its plan (history depth), not by ownership.
Prices and sizes are double precision: 15-17 significant digits cover crypto prices
and sizes, and floats keep ingest and analytics fast. Storage choices for the trade
table (indexes, BRIN, retention) are explained in docs/marketdata.md.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from marketdata.symbols import symbol_to_path


class Exchange(models.Model):
    id = models.CharField(primary_key=True, max_length=32, help_text="ccxt id, or 'sim'.")
    name = models.CharField(max_length=64)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Instrument(models.Model):
    exchange = models.ForeignKey(Exchange, on_delete=models.PROTECT, related_name="instruments")
    ccxt_symbol = models.CharField(max_length=32, help_text="ccxt form, e.g. BTC/USDT.")
    symbol = models.CharField(max_length=32, help_text="Public form, e.g. BTC-USDT.")
    base = models.CharField(max_length=16)
    quote = models.CharField(max_length=16)
    # Tick sizes (ccxt TICK_SIZE precision mode): the smallest price and size steps.
    price_precision = models.DecimalField(max_digits=30, decimal_places=18)
    size_precision = models.DecimalField(max_digits=30, decimal_places=18)
    active = models.BooleanField(default=True)
    feed_shard = models.PositiveSmallIntegerField(
        default=0, db_index=True, help_text="Which run_feeds --shard streams this instrument."
    )

    class Meta:
        ordering = ["exchange_id", "symbol"]
        constraints = [
            models.UniqueConstraint(fields=["exchange", "ccxt_symbol"], name="md_instr_ccxt_uniq"),
            models.UniqueConstraint(fields=["exchange", "symbol"], name="md_instr_symbol_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange_id}:{self.symbol}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.symbol:
            self.symbol = symbol_to_path(self.ccxt_symbol)
        super().save(*args, **kwargs)


class Side(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class Trade(models.Model):
    """One print on the tape. Append-only; the biggest table by far."""

    # No separate index on the FK: the composite indexes below start with it.
    instrument = models.ForeignKey(
        Instrument, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    trade_id = models.CharField(max_length=64, help_text="The exchange's trade id.")
    ts = models.DateTimeField(help_text="Exchange timestamp.")
    received_ts = models.DateTimeField(help_text="When our feed received it.")
    price = models.FloatField()
    size = models.FloatField()
    side = models.CharField(max_length=4, choices=Side.choices, help_text="Aggressor side.")

    class Meta:
        constraints = [
            # Idempotent ingest: replays, reconnects and gap repair insert ON CONFLICT DO NOTHING.
            models.UniqueConstraint(fields=["instrument", "trade_id"], name="md_trade_uniq"),
        ]
        indexes = [
            # Time-range scans per instrument and keyset pagination on (ts, id).
            models.Index(fields=["instrument", "ts", "id"], name="md_trade_instr_ts"),
        ]
        # A BRIN index on ts (PostgreSQL only) is created by migration 0002.

    def __str__(self) -> str:
        return f"{self.trade_id} {self.side} {self.size}@{self.price}"


class Candle1m(models.Model):
    instrument = models.ForeignKey(
        Instrument, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    ts = models.DateTimeField(help_text="Open time of the minute (UTC).")
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.FloatField(help_text="Base-currency volume.")
    buy_volume = models.FloatField(default=0.0, help_text="Volume of buyer-initiated trades.")
    trade_count = models.PositiveIntegerField(default=0)
    is_final = models.BooleanField(default=False)

    class Meta:
        verbose_name = "1-minute candle"
        constraints = [
            models.UniqueConstraint(fields=["instrument", "ts"], name="md_candle1m_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.ts:%Y-%m-%d %H:%M}"


class BookSnapshot(models.Model):
    """Periodic top-N L2 snapshot; bids and asks are [[price, size], ...], best first."""

    instrument = models.ForeignKey(
        Instrument, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    ts = models.DateTimeField()
    bids = models.JSONField(default=list)
    asks = models.JSONField(default=list)

    class Meta:
        indexes = [models.Index(fields=["instrument", "-ts"], name="md_book_instr_ts")]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.ts:%Y-%m-%d %H:%M:%S}"


class Ticker(models.Model):
    """The latest ticker per instrument (one row each, overwritten)."""

    instrument = models.OneToOneField(
        Instrument, on_delete=models.CASCADE, primary_key=True, related_name="ticker"
    )
    ts = models.DateTimeField()
    last = models.FloatField()
    bid = models.FloatField(null=True, blank=True)
    ask = models.FloatField(null=True, blank=True)
    bid_size = models.FloatField(null=True, blank=True)
    ask_size = models.FloatField(null=True, blank=True)
    high_24h = models.FloatField(null=True, blank=True)
    low_24h = models.FloatField(null=True, blank=True)
    open_24h = models.FloatField(null=True, blank=True)
    volume_24h = models.FloatField(null=True, blank=True)
    quote_volume_24h = models.FloatField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.last}"
