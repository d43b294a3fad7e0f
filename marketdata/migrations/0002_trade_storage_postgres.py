"""PostgreSQL-only storage tuning for the trade table (a no-op on SQLite).

- BRIN on ts: trades arrive in time order, so a BRIN index is a few hundred kilobytes
  for billions of rows and makes retention deletes and cross-instrument time scans
  cheap without a second large btree.
- Insert-driven autovacuum: an append-only table otherwise waits far too long for its
  visibility map to be set, which slows index-only scans.
See docs/marketdata.md.
"""

from django.db import migrations

FORWARD = [
    "CREATE INDEX IF NOT EXISTS md_trade_ts_brin ON marketdata_trade USING brin (ts) "
    "WITH (pages_per_range = 64)",
    "CREATE INDEX IF NOT EXISTS md_candle1m_ts_brin ON marketdata_candle1m USING brin (ts)",
    "ALTER TABLE marketdata_trade SET (autovacuum_vacuum_insert_scale_factor = 0.01, "
    "autovacuum_analyze_scale_factor = 0.01)",
]
BACKWARD = [
    "ALTER TABLE marketdata_trade RESET (autovacuum_vacuum_insert_scale_factor, "
    "autovacuum_analyze_scale_factor)",
    "DROP INDEX IF EXISTS md_candle1m_ts_brin",
    "DROP INDEX IF EXISTS md_trade_ts_brin",
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for sql in statements:
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("marketdata", "0001_initial")]

    operations = [migrations.RunPython(_run(FORWARD), _run(BACKWARD))]
