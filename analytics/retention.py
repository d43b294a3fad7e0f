"""Retention of the stored live analytics: OFI seconds and VPIN buckets older than a cutoff
are deleted in bounded batches, like market data's trades (marketdata.services).

The tables have no index that leads with ts, so the deletes go instrument by instrument:
OFI's unique (instrument, ts) index finds an instrument's old seconds directly, and VPIN's
(instrument, bucket_volume, ts) index narrows to the instrument. A plain `ts < cutoff`
would scan the whole table once more after the last batch, on every run.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from analytics.models import OfiSecond, VpinBucket
from marketdata.models import Instrument

BATCH_SIZE = 50_000


def _prune(model: type[OfiSecond] | type[VpinBucket], *, before: datetime, batch_size: int) -> int:
    deleted = 0
    for instrument_id in Instrument.objects.order_by("pk").values_list("pk", flat=True):
        old = model.objects.filter(instrument_id=instrument_id, ts__lt=before)
        while True:
            # One short transaction per batch, so the feed runner's inserts never wait
            # behind one huge delete.
            with transaction.atomic():
                ids = list(old.values_list("pk", flat=True)[:batch_size])
                if ids:
                    deleted += model.objects.filter(pk__in=ids).delete()[0]
            if len(ids) < batch_size:
                break
    return deleted


def ofi_seconds_prune(*, before: datetime, batch_size: int = BATCH_SIZE) -> int:
    """Delete the stored OFI seconds older than `before`; returns how many."""
    return _prune(OfiSecond, before=before, batch_size=batch_size)


def vpin_buckets_prune(*, before: datetime, batch_size: int = BATCH_SIZE) -> int:
    """Delete the stored VPIN buckets older than `before`; returns how many."""
    return _prune(VpinBucket, before=before, batch_size=batch_size)
