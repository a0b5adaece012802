"""A bounded number of live event streams per API process (``ASTROPT_MAX_EVENT_STREAMS``).

Each open ``GET /jobs/{id}/events`` stream polls the store every ``events_poll_seconds`` on the
thread pool that every other endpoint shares; hundreds of them starve ``/health`` and the job
reads. Past the cap a new stream is refused with 503 and Retry-After (polling ``GET /jobs/{id}``
gives the same data); a stream's slot is given back when it ends or its client leaves.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import AsyncIterator

from fastapi import Request

from state.errors import Unavailable

RETRY_AFTER_S = 5
_creating = threading.Lock()


class StreamSlots:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        """One slot for a new stream, or :class:`Unavailable` (503) when all are taken."""
        with self._lock:
            if self.open >= self.capacity:
                error = Unavailable(
                    f"{self.open} live event streams are open, this service's limit "
                    f"(setting ASTROPT_MAX_EVENT_STREAMS); retry in {RETRY_AFTER_S} s "
                    "or poll GET /jobs/{id} instead"
                )
                error.headers = {"Retry-After": str(RETRY_AFTER_S)}
                raise error
            self.open += 1

    def give_back(self) -> None:
        with self._lock:
            self.open = max(0, self.open - 1)

    def guard(self, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        """``stream`` that gives its slot back once, when it ends, fails, is closed or is dropped
        unstarted (a client gone before the first byte)."""
        released = threading.Event()

        def release() -> None:
            if not released.is_set():
                released.set()
                self.give_back()

        async def guarded() -> AsyncIterator[str]:
            try:
                async for chunk in stream:
                    yield chunk
            finally:
                release()

        wrapped = guarded()
        weakref.finalize(wrapped, release)
        return wrapped


def stream_slots(request: Request) -> StreamSlots:
    state = request.app.state
    with _creating:  # the route runs on the thread pool
        slots = getattr(state, "event_stream_slots", None)
        if slots is None:
            slots = state.event_stream_slots = StreamSlots(state.settings.max_event_streams)
    return slots
