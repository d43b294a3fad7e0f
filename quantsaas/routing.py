"""WebSocket routes: the live market-data stream (docs/streaming.md)."""

from django.urls import path

from marketdata.streaming.consumer import StreamConsumer

websocket_urlpatterns = [
    path("ws/v1/stream", StreamConsumer.as_asgi()),
]
