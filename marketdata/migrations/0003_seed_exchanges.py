"""Seed the exchanges and instruments configured out of the box."""

from decimal import Decimal

from django.db import migrations

EXCHANGES = [
    ("sim", "Simulated exchange"),
    ("binance", "Binance"),
    ("coinbase", "Coinbase"),
    ("kraken", "Kraken"),
]

# exchange, ccxt symbol, price tick, size step, feed shard
INSTRUMENTS = [
    ("sim", "BTC/USD", "0.01", "0.0001", 0),
    ("sim", "ETH/USD", "0.01", "0.001", 0),
    ("sim", "SOL/USD", "0.001", "0.01", 0),
    ("binance", "BTC/USDT", "0.01", "0.00001", 1),
    ("binance", "ETH/USDT", "0.01", "0.0001", 1),
    ("coinbase", "BTC/USD", "0.01", "0.00000001", 1),
    ("kraken", "BTC/USD", "0.1", "0.00000001", 1),
]


def seed(apps, schema_editor):
    Exchange = apps.get_model("marketdata", "Exchange")
    Instrument = apps.get_model("marketdata", "Instrument")
    for exchange_id, name in EXCHANGES:
        Exchange.objects.update_or_create(id=exchange_id, defaults={"name": name})
    for exchange_id, ccxt_symbol, tick, step, shard in INSTRUMENTS:
        base, quote = ccxt_symbol.split("/")
        Instrument.objects.update_or_create(
            exchange_id=exchange_id,
            ccxt_symbol=ccxt_symbol,
            defaults={
                "symbol": f"{base}-{quote}",
                "base": base,
                "quote": quote,
                "price_precision": Decimal(tick),
                "size_precision": Decimal(step),
                "feed_shard": shard,
            },
        )


def unseed(apps, schema_editor):
    Instrument = apps.get_model("marketdata", "Instrument")
    for exchange_id, ccxt_symbol, *_ in INSTRUMENTS:
        Instrument.objects.filter(exchange_id=exchange_id, ccxt_symbol=ccxt_symbol).delete()


class Migration(migrations.Migration):
    dependencies = [("marketdata", "0002_trade_storage_postgres")]

    operations = [migrations.RunPython(seed, unseed)]
