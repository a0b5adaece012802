"""Keeps a job's lease fresh while its worker lives (imports no torch)."""

from __future__ import annotations

import threading

from state.store import repository, session_scope
from worker.fork_guard import no_fork


class Heartbeat:
    """Background thread that keeps a job's lease fresh while its worker lives."""

    def __init__(self, database_url: str, job_id: str, owner: str, interval: float):
        self.url, self.job_id, self.owner, self.interval = database_url, job_id, owner, interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                with no_fork(), session_scope(self.url) as session:
                    repository.heartbeat(session, self.job_id, self.owner)
            except Exception:  # a transient database error must not kill training
                continue
