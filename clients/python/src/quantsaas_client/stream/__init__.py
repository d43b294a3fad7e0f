"""The live stream: an asyncio client, its events, local order books, and a sync wrapper."""

from quantsaas_client.stream.book import OrderBook, crc32_checksum
from quantsaas_client.stream.client import Stream, StreamStats
from quantsaas_client.stream.events import (
    ChecksumMismatch,
    Event,
    Gap,
    Heartbeat,
    Lagged,
    Other,
    Pong,
    Reconnecting,
    ResumeUnavailable,
    Snapshot,
    StreamErrorFrame,
    Subscribed,
    Unsubscribed,
    Update,
    Welcome,
)
from quantsaas_client.stream.sync import SyncStream

__all__ = [
    "ChecksumMismatch",
    "Event",
    "Gap",
    "Heartbeat",
    "Lagged",
    "OrderBook",
    "Other",
    "Pong",
    "Reconnecting",
    "ResumeUnavailable",
    "Snapshot",
    "Stream",
    "StreamErrorFrame",
    "StreamStats",
    "Subscribed",
    "SyncStream",
    "Unsubscribed",
    "Update",
    "Welcome",
    "crc32_checksum",
]
