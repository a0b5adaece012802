"""Repository functions over jobs and metric points. Routes and workers go through these."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from astropt.run_dir import RunDir
from state.store import summaries
from state.store.models import (
    ACTIVE_PHASES,
    FINISHED_PHASES,
    JOB_ID_LENGTH,
    CurveSummary,
    Job,
    MetricPoint,
    step_level,
    utcnow,
)


def create_job(session: Session, job_id: str, spec: dict[str, Any], out_dir: str) -> Job:
    job = Job(
        id=job_id,
        phase="queued",
        kind=spec.get("kind", "train"),
        spec=spec,
        out_dir=out_dir,
        max_iters=int(spec["max_iters"]),
        checkpoints={},
        attempts=0,
        cancel_requested=False,
        iteration=0,
    )
    session.add(job)
    session.flush()
    return job


def storable_id(job_id: str) -> bool:
    """Whether ``job_id`` could name a stored job: 1 to 32 printable characters (the column).

    Every lookup by an id a client sent goes through here, so a NUL byte or a lone surrogate
    (which PostgreSQL refuses with an error, SQLite simply does not find) is "not found" on
    both backends, on every endpoint."""
    return 0 < len(job_id) <= JOB_ID_LENGTH and job_id.isprintable()


def get_job(session: Session, job_id: str) -> Job | None:
    if not storable_id(job_id):
        return None
    return session.get(Job, job_id)


def list_jobs(
    session: Session,
    phase: str | None = None,
    limit: int = 50,
    offset: int = 0,
    kind: str | None = None,
    owner: str | None = None,
) -> tuple[Sequence[Job], int]:
    """Newest first; ``owner``: only the jobs that user submitted."""
    query = select(Job)
    counter = select(func.count()).select_from(Job)
    if owner is not None:
        query = query.where(Job.submitted_by == owner)
        counter = counter.where(Job.submitted_by == owner)
    if phase:
        query = query.where(Job.phase == phase)
        counter = counter.where(Job.phase == phase)
    if kind:
        query = query.where(Job.kind == kind)
        counter = counter.where(Job.kind == kind)
    items = session.scalars(
        query.order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
    ).all()
    return items, int(session.scalar(counter) or 0)


def count_by_phase(session: Session) -> dict[str, int]:
    rows = session.execute(select(Job.phase, func.count()).group_by(Job.phase)).all()
    return {phase: int(count) for phase, count in rows}


def count_active(session: Session, owner: str | None = None) -> int:
    query = select(func.count()).select_from(Job).where(Job.phase.in_(ACTIVE_PHASES))
    if owner is not None:
        query = query.where(Job.submitted_by == owner)
    return int(session.scalar(query) or 0)


def claim_job(session: Session, job_id: str, owner: str) -> bool:
    """Atomically take a queued job. A running job whose worker died is settled first
    (:func:`state.store.recovery.reap_orphan`: queued again or failed, with the reason)."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.phase == "queued")
        .values(
            phase="running",
            owner=owner,
            heartbeat_at=now,
            attempts=Job.attempts + 1,
            started_at=func.coalesce(Job.started_at, now),
            failure_reason=None,
            updated_at=now,
        )
    )
    return cast(CursorResult[Any], result).rowcount == 1


def heartbeat(session: Session, job_id: str, owner: str) -> None:
    session.execute(
        update(Job).where(Job.id == job_id, Job.owner == owner).values(heartbeat_at=utcnow())
    )


def is_cancel_requested(session: Session, job_id: str) -> bool:
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def update_job(session: Session, job_id: str, **values: Any) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow(), **values))


def finish_job(session: Session, job_id: str, phase: str, reason: str | None = None) -> None:
    assert phase in FINISHED_PHASES, phase
    update_job(
        session,
        job_id,
        phase=phase,
        failure_reason=reason,
        finished_at=utcnow(),
        eta_seconds=None,
        owner=None,
        cancel_requested=False,
    )


def update_if_phase(session: Session, job_id: str, expected: str, **values: Any) -> bool:
    """Update a job only if it is still in phase ``expected`` (one of concurrent requests wins)."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.phase == expected)
        .values(updated_at=utcnow(), **values)
    )
    return cast(CursorResult[Any], result).rowcount == 1


def cancel_if_queued(session: Session, job_id: str) -> bool:
    """Cancel a job no worker has claimed yet; False if it was claimed (or finished) meanwhile."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.phase == "queued")
        .values(phase="cancelled", finished_at=now, updated_at=now, eta_seconds=None)
    )
    return cast(CursorResult[Any], result).rowcount == 1


def request_cancel_if_running(session: Session, job_id: str) -> bool:
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.phase == "running")
        .values(phase="cancelling", cancel_requested=True, updated_at=utcnow())
    )
    return cast(CursorResult[Any], result).rowcount == 1


def upsert_points(session: Session, job_id: str, points: Iterable[tuple[str, int, float]]) -> None:
    """Insert metric points; a repeated (job, kind, step) overwrites the old value. The curves'
    summaries (state/store/summaries.py) follow in the same transaction.

    Non-finite values are dropped: a curve is a list of numbers, and JSON has no NaN.
    """
    finite = [
        (kind, int(step), float(value))
        for kind, step, value in points
        if math.isfinite(float(value))
    ]
    rows = [
        {
            "job_id": job_id,
            "kind": kind,
            "step": step,
            "value": value,
            "level": step_level(step),
            "recorded_at": utcnow(),
        }
        for kind, step, value in finite
    ]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(MetricPoint).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=["job_id", "kind", "step"],
        set_={"value": statement.excluded.value, "recorded_at": statement.excluded.recorded_at},
    )
    session.execute(statement)
    summaries.record(session, job_id, finite)


def delete_points_after(session: Session, job_id: str, step: int) -> int:
    """Drop points past ``step`` (a resumed run re-creates them from its checkpoint)."""
    result = session.execute(
        delete(MetricPoint).where(MetricPoint.job_id == job_id, MetricPoint.step > step)
    )
    deleted = int(cast(CursorResult[Any], result).rowcount or 0)
    if deleted:
        summaries.rebuild(session, job_id)
    return deleted


def get_points(
    session: Session, job_id: str, kinds: Sequence[str], since: int | None = None
) -> dict[str, list[tuple[int, float]]]:
    query = select(MetricPoint.kind, MetricPoint.step, MetricPoint.value).where(
        MetricPoint.job_id == job_id, MetricPoint.kind.in_(kinds)
    )
    if since is not None:
        query = query.where(MetricPoint.step > since)
    curves: dict[str, list[tuple[int, float]]] = {kind: [] for kind in kinds}
    for kind, step, value in session.execute(query.order_by(MetricPoint.kind, MetricPoint.step)):
        curves[kind].append((int(step), float(value)))
    return curves


def lowest_point(session: Session, job_id: str, kind: str) -> tuple[int, float] | None:
    """The curve's lowest value and its (first) step, by index (``ix_metric_points_value``)."""
    row = session.execute(
        select(MetricPoint.step, MetricPoint.value)
        .where(MetricPoint.job_id == job_id, MetricPoint.kind == kind)
        .order_by(MetricPoint.value, MetricPoint.step)
        .limit(1)
    ).first()
    return None if row is None else (int(row[0]), float(row[1]))


def mark_published(session: Session, job_id: str) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(published_at=utcnow()))


def unpublished_jobs(session: Session, older_than_seconds: float) -> list[str]:
    """Queued jobs whose message never reached the broker (the API died or the broker failed
    between recording and publishing), recorded more than ``older_than_seconds`` ago."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    return list(
        session.scalars(
            select(Job.id)
            .where(Job.phase == "queued", Job.published_at.is_(None), Job.updated_at < cutoff)
            .order_by(Job.created_at)
            .limit(100)
        )
    )


def record_checkpoint(
    session: Session, job_id: str, name: str, kind: str, step: int, removed: Iterable[str] = ()
) -> None:
    """Add (or refresh) checkpoint ``name`` of a job and forget the ``removed`` ones."""
    job = session.get(Job, job_id, with_for_update=session.get_bind().dialect.name == "postgresql")
    if job is None:
        return
    checkpoints = {k: v for k, v in (job.checkpoints or {}).items() if k not in set(removed)}
    checkpoints[name] = {"kind": kind, "step": int(step), "created_at": utcnow().isoformat()}
    job.checkpoints = checkpoints


def orphaned_jobs(session: Session, lease_seconds: float) -> Sequence[Job]:
    """Running or cancelling jobs whose worker has not heart-beaten within the lease."""
    stale = utcnow() - timedelta(seconds=lease_seconds)
    return session.scalars(
        select(Job).where(
            Job.phase.in_(("running", "cancelling")),
            or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale),
        )
    ).all()


def delete_finished_job(session: Session, job_id: str) -> bool:
    """Delete a finished job and its points; False when it is gone or no longer finished.

    One statement decides: of concurrent deletes of one job exactly one removes the row (on
    PostgreSQL the others wait on its row lock, then find nothing), so only that one may go on
    to remove the run directory."""
    if not storable_id(job_id):
        return False
    removed = session.execute(delete(Job).where(Job.id == job_id, Job.phase.in_(FINISHED_PHASES)))
    if cast(CursorResult[Any], removed).rowcount != 1:
        return False
    # SQLite without cascade
    session.execute(delete(CurveSummary).where(CurveSummary.job_id == job_id))
    session.execute(delete(MetricPoint).where(MetricPoint.job_id == job_id))
    return True


def delete_job(session: Session, job_id: str) -> None:
    session.execute(delete(CurveSummary).where(CurveSummary.job_id == job_id))
    session.execute(delete(MetricPoint).where(MetricPoint.job_id == job_id))
    session.execute(delete(Job).where(Job.id == job_id))


def latest_completed_job(
    session: Session, kind: str | None = None, owner: str | None = None
) -> Job | None:
    """The most recently finished completed job (of ``kind``: train | finetune, else any; of
    ``owner`` when given); what inference uses by default."""
    query = select(Job).where(Job.phase == "completed")
    if kind is not None:
        query = query.where(Job.kind == kind)
    if owner is not None:
        query = query.where(Job.submitted_by == owner)
    return session.scalars(query.order_by(Job.finished_at.desc()).limit(1)).first()


def best_checkpoint_dir(session: Session, job_id: str) -> Path | None:
    """The ``best`` checkpoint directory of a completed job, else its ``last``; None if neither."""
    job = get_job(session, job_id)
    if job is None or job.phase != "completed":
        return None
    return RunDir(Path(job.out_dir)).best_or_last()


def jobs_of_kind(session: Session, kind: str, limit: int = 10_000) -> Sequence[Job]:
    """Jobs of one kind, newest first (GET /datasets lists the tokenise jobs' data sets)."""
    return session.scalars(
        select(Job).where(Job.kind == kind).order_by(Job.created_at.desc()).limit(limit)
    ).all()


def active_jobs(session: Session) -> Sequence[Job]:
    """Queued, running and cancelling jobs."""
    return session.scalars(select(Job).where(Job.phase.in_(ACTIVE_PHASES))).all()


def jobs_of_owner(session: Session, owner: str) -> Sequence[Job]:
    return session.scalars(select(Job).where(Job.submitted_by == owner)).all()
