"""Calls to the broker with a hard deadline, so no request waits on a silent peer.

The broker clients have their own socket timeouts (``ASTROPT_BROKER_TIMEOUT_SECONDS``); this is
the bound over a whole call (connect, retries, publish) in case one of them blocks anyway. The
calls run on a small pool of their own threads, so a hung broker never takes the threads that
serve HTTP; a caller that waits longer than the deadline gets ``DeadlineExceeded``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

T = TypeVar("T")


class DeadlineExceeded(TimeoutError):
    """The call did not finish within its deadline (it may still finish in the background)."""


class Deadline:
    """Runs calls on ``max_threads`` threads of its own and waits at most ``seconds`` for each."""

    def __init__(self, seconds: float, max_threads: int = 4, name: str = "broker-call"):
        self.seconds = seconds
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix=name)

    def call(self, fn: Callable[[], T], what: str) -> T:
        future = self.submit(fn)
        try:
            return self.wait(future, what)
        except DeadlineExceeded:
            future.cancel()  # still queued behind hung calls: it never runs
            raise

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        return self._pool.submit(fn)

    def wait(self, future: Future[T], what: str) -> T:
        try:
            return future.result(timeout=self.seconds)
        except FutureTimeout:
            raise DeadlineExceeded(f"{what}: no answer within {self.seconds:g} s") from None


class SingleFlightProbe:
    """A health probe that runs at most once at a time; callers share the one in flight.

    However many health checks arrive while the broker is silent, one thread waits on it; the
    others read the same result when it comes or give up at the deadline. A result is reused
    for ``fresh_seconds``.
    """

    def __init__(
        self, probe: Callable[[], None], deadline: Deadline, what: str, fresh_seconds: float = 1.0
    ):
        self.probe, self.deadline, self.what, self.fresh_seconds = (
            probe,
            deadline,
            what,
            fresh_seconds,
        )
        self._lock = threading.Lock()
        self._future: Future[None] | None = None
        self._done_at = 0.0

    def __call__(self) -> None:
        self.deadline.wait(self._current(), self.what)

    async def check(self) -> None:
        """The same, awaited: the event loop never blocks on the peer."""
        future = asyncio.wrap_future(self._current())
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout=self.deadline.seconds)
        except TimeoutError:
            raise DeadlineExceeded(
                f"{self.what}: no answer within {self.deadline.seconds:g} s"
            ) from None

    def _current(self) -> Future[None]:
        with self._lock:
            future = self._future
            if (
                future is None
                or future.cancelled()
                or (future.done() and time.monotonic() - self._done_at > self.fresh_seconds)
            ):
                future = self._future = self.deadline.submit(self._run)
            return future

    def _run(self) -> None:
        try:
            self.probe()
        finally:
            self._done_at = time.monotonic()
