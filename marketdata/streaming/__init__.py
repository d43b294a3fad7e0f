"""The live WebSocket stream, ``/ws/v1/stream`` (docs/api.md; customer guide in docs/streaming.md).

- ``protocol``: parsing and validating what clients send.
- ``frames``: what the server sends, serialised once with orjson.
- ``quotas``: connection slots (atomic in Redis), message-rate token bucket.
- ``hub``: one per process (event loop): joins each Channels group once, fans
  every published message out to the local connections, keeps the delay lines.
- ``connection``: one client's bounded outgoing queue, sender and lag handling.
- ``access``: who is on the other end (keys, sessions) and whether they still may be.
- ``recheck``: every few seconds, keys, memberships and the current plan re-applied
  to open connections (closing the newest beyond a lowered connection limit,
  dropping the newest subscriptions beyond a lowered subscription limit).
- ``consumer``: the Channels consumer, thin: authenticate, enforce, call the hub.
"""
