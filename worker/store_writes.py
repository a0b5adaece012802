"""Store writes of a training run that survive a database outage.

Each write is a function of a session; writes are kept in order and applied in one transaction
when the database answers, so a short outage costs the run nothing (metric points are upserts
and job updates are last-wins: re-applying a batch is harmless). A write that cannot be applied
is retried at most once a second; past ``max_outage_seconds`` (or ``max_pending`` writes) the
run is stopped with ``StoreOutage`` and resumes from its last checkpoint later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from state.store import session_scope

log = logging.getLogger(__name__)
STORE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout)
Write = Callable[[Session], None]


class StoreOutage(RuntimeError):
    """The database stayed unreachable longer than a run may wait for it."""


class BufferedWrites:
    def __init__(
        self,
        database_url: str,
        max_outage_seconds: float,
        max_pending: int = 100_000,
        retry_seconds: float = 1.0,
    ):
        self.url, self.max_outage, self.max_pending = database_url, max_outage_seconds, max_pending
        self.retry_seconds = retry_seconds
        self.pending: list[Write] = []
        self.failing_since: float | None = None
        self._last_try = 0.0

    def write(self, fn: Write) -> None:
        """Apply ``fn`` now, after any earlier writes still waiting; keep it if the store is down."""
        self.pending.append(fn)
        self.flush()

    def flush(self) -> bool:
        """True when nothing is left waiting; raises ``StoreOutage`` past the limits."""
        if not self.pending:
            return True
        now = time.monotonic()
        if self.failing_since is not None and now - self._last_try < self.retry_seconds:
            return self._check(now, None)
        self._last_try = now
        try:
            with session_scope(self.url) as session:
                for fn in self.pending:
                    fn(session)
        except STORE_ERRORS as exc:
            if self.failing_since is None:
                log.warning(
                    "database unavailable (%s); keeping %d write(s) until it is back",
                    type(exc).__name__,
                    len(self.pending),
                )
                self.failing_since = now
            return self._check(now, exc)
        if self.failing_since is not None:
            log.warning("database back; %d buffered write(s) applied", len(self.pending))
        self.pending.clear()
        self.failing_since = None
        return True

    def drain(self) -> None:
        """Wait until every write is applied (or the outage limit is reached)."""
        while not self.flush():
            time.sleep(self.retry_seconds / 4)

    def _check(self, now: float, exc: Exception | None) -> bool:
        assert self.failing_since is not None
        if now - self.failing_since > self.max_outage or len(self.pending) > self.max_pending:
            raise StoreOutage(
                f"database unreachable for {now - self.failing_since:.0f} s with "
                f"{len(self.pending)} write(s) waiting"
            ) from exc
        return False
