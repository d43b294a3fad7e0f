"""WebSocket routes. The market-data stream consumer is added by the stream issue."""

websocket_urlpatterns: list = []
