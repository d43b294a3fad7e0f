"""The stream for scripts and notebooks: a plain iterator over a background event loop.

A notebook already runs an event loop in its main thread, so the stream gets a
thread and a loop of its own; events cross over through a queue.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from quantsaas_client.stream.client import Stream
from quantsaas_client.stream.events import Event

_END = object()


class SyncStream:
    """``for event in SyncStream(stream): ...``; ``close()`` (or ``with``) stops it.

    ``get(timeout)`` returns the next event or None after ``timeout`` seconds.
    """

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self._queue: queue.Queue[Any] = queue.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._finished = False

    def start(self) -> SyncStream:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="quantsaas-stream", daemon=True)
            self._thread.start()
            self._started.wait()
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def pump() -> None:
            events = self.stream.events()
            try:
                async for event in events:
                    self._queue.put(event)
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # handed to the consumer's thread, raised there
                self._queue.put(exc)
            finally:
                await events.aclose()
                self._queue.put(_END)

        self._task = loop.create_task(pump())
        self._started.set()
        try:
            loop.run_until_complete(self._task)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event; None when ``timeout`` passes first or the stream has ended."""
        if self._finished:
            return None
        self.start()
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _END:
            self._finished = True
            return None
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        event: Event = item
        return event

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self.get()
            if event is None:
                return
            yield event

    def _call(self, coroutine: Any, timeout: float = 10.0) -> Any:
        self.start()
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def subscribe(self, channels: Sequence[str]) -> None:
        self._call(self.stream.subscribe(channels))

    def unsubscribe(self, channels: Sequence[str]) -> None:
        self._call(self.stream.unsubscribe(channels))

    def close(self) -> None:
        if self._thread is None or self._loop is None or self._loop.is_closed():
            return
        self.stream._closing = True
        task = self._task
        if task is not None:
            self._loop.call_soon_threadsafe(task.cancel)
        self._thread.join(10)

    def __enter__(self) -> SyncStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
