"""How a job ends: a training result's final phase, and a failure recorded with its reason
(imports no torch)."""

from __future__ import annotations

from typing import Literal

from state.store import repository, session_scope

MAX_REASON_CHARS = 4000  # a failure reason kept on the job
FinalPhase = Literal["completed", "cancelled", "failed"]
# A diverged run failed: it must never be served as a healthy model.
PHASE_OF_STATUS: dict[str, FinalPhase] = {
    "completed": "completed",
    "stopped": "cancelled",
    "diverged": "failed",
}


def final_phase(status: str) -> FinalPhase:
    return PHASE_OF_STATUS[status]


def fail_job(url: str, job_id: str, exc: BaseException) -> Literal["failed"]:
    """Record the job failed with ``"<ExceptionType>: <message>"`` as its reason."""
    reason = f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]
    with session_scope(url) as session:
        repository.finish_job(session, job_id, "failed", reason)
    return "failed"
