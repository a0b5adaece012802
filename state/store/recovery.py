"""Jobs whose worker died: why, and whether they get another attempt.

A worker that is killed (kill -9, the kernel's OOM killer, a lost node) stops heart-beating.
The next live worker to look records the death on the job (``interruptions`` and the
``waiting_reason`` / ``failure_reason`` a person reads) and queues the job again, unless it
has used its ``max_attempts``: then it is ``failed``, so a job that kills its worker every
time is not retried for ever.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, or_, update
from sqlalchemy.orm import Session

from state.store.models import Job, utcnow

Reaped = Literal["requeued", "failed", "cancelled"]


def death_reason(job: Job, max_attempts: int) -> str:
    return f"worker {job.owner or '(unknown)'} died (lost heartbeat) during attempt {job.attempts} of {max_attempts}"


def reap_orphan(
    session: Session, job_id: str, lease_seconds: float, max_attempts: int
) -> Reaped | None:
    """Settle a running/cancelling job whose heartbeat is older than the lease; None when the
    job is alive, finished, or another worker settled it first (the update is conditional)."""
    now = utcnow()
    stale = now - timedelta(seconds=lease_seconds)
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or job.phase not in ("running", "cancelling"):
        return None
    if job.heartbeat_at is not None and job.heartbeat_at >= stale:
        return None
    reason = death_reason(job, max_attempts)
    record = {
        "attempt": job.attempts,
        "worker": job.owner,
        "reason": "lost heartbeat",
        "at": now.isoformat(),
    }
    values: dict[str, object] = {
        "owner": None,
        "updated_at": now,
        "eta_seconds": None,
        "interruptions": [*(job.interruptions or []), record],
    }
    outcome: Reaped
    if job.phase == "cancelling":
        outcome = "cancelled"
        values.update(phase="cancelled", finished_at=now, cancel_requested=False)
    elif job.attempts >= max_attempts:
        outcome = "failed"
        values.update(
            phase="failed",
            finished_at=now,
            cancel_requested=False,
            failure_reason=f"{reason}; no attempts left (setting ASTROPT_MAX_ATTEMPTS)",
        )
    else:
        outcome = "requeued"
        values.update(
            phase="queued",
            published_at=None,
            waiting_reason=f"{reason}; queued again to resume from its last checkpoint",
        )
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.phase == job.phase, Job.attempts == job.attempts)
        .where(or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale))
        .values(**values)
    )
    return outcome if cast(CursorResult[Any], result).rowcount == 1 else None
