"""The service layer: job submission, state changes and read models. Routes stay thin over it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from astropt.run_dir import RunDir
from jobkinds import capacity
from jobkinds.base import checkpoint_resume_target
from jobkinds.registry import kind_of
from service.jobs.schemas import (
    CheckpointOut,
    Curve,
    Curves,
    JobOut,
    JobSpec,
    JobSummary,
    Links,
    Progress,
)
from service.users.context import owner_filter, submitter
from service.users.quotas import check_quotas
from state.errors import Conflict, NotFound, TooManyJobs, Unavailable
from state.settings import Settings
from state.store import repository
from state.store.curves import read_curves, thin
from state.store.models import FINISHED_PHASES, Job

Publisher = Callable[[str], None]
CURVE_KINDS = ("train_loss", "val_loss", "lr", "tokens_per_s", "mfu", "effective_batch_size")
PROBE_PREFIX = "probe_r2/"  # + label: the live probe's curves (astropt.training.live_probe)


def submit(
    session: Session,
    settings: Settings,
    publish: Publisher,
    spec: JobSpec,
    owner: str | None = None,
) -> Job:
    """Check, record and queue a job; ``owner``: the user submitting it (their quotas apply;
    default: the request's user, service.users.context)."""
    owner = owner if owner is not None else submitter()
    kind = kind_of(spec.kind)
    spec = kind.resolve(session, spec, settings)
    kind.check(spec, settings)
    _check_active(session, settings)
    check_quotas(session, owner, kind.output_bytes(spec, settings))
    waiting = capacity.check(session, settings, spec.resources, spec.device)
    job_id = uuid.uuid4().hex
    out_dir = settings.runs_dir / job_id
    body = spec.model_dump(mode="json")
    body["out_dir"] = str(out_dir)
    kind.prepare(session, spec, body, settings)
    job = repository.create_job(session, job_id, body, str(out_dir))
    job.submitted_by = owner
    res = spec.resources
    job.resources = {
        **res.model_dump(mode="json"),
        "world_size": res.world_size,
        "effective_batch_size": spec.batch_size * spec.grad_accum * res.world_size,
        "executor": settings.executor,
    }
    job.waiting_reason = waiting
    session.commit()  # the worker must see the row before it sees the message
    _publish(session, publish, job)
    return job


def _check_active(session: Session, settings: Settings) -> None:
    active = repository.count_active(session)
    if active >= settings.max_active_jobs:
        raise TooManyJobs(
            f"{active} jobs are queued or running (limit {settings.max_active_jobs}); "
            "wait for some to finish or cancel one"
        )


def _publish(session: Session, publish: Publisher, job: Job) -> None:
    """Publish a newly recorded job; if the broker fails, the job is failed with the reason."""
    try:
        publish(job.id)
    except Exception as exc:
        reason = _broker_down(exc)
        repository.finish_job(session, job.id, "failed", reason)
        session.commit()
        raise Unavailable(reason) from exc
    repository.mark_published(session, job.id)
    session.commit()


def _broker_down(exc: Exception) -> str:
    return f"could not queue the job: broker unavailable ({type(exc).__name__}: {exc})"[:1000]


def get(session: Session, job_id: str, owner: str | None = None) -> Job:
    """The job; ``owner``: as seen by that user, for whom others' jobs do not exist (404);
    default: the request's user (service.users.context)."""
    owner = owner if owner is not None else owner_filter()
    job = repository.get_job(session, job_id)
    if job is None or (owner is not None and job.submitted_by != owner):
        raise NotFound(f"job {job_id} not found")
    return job


def visible_job(session: Session, job_id: str) -> Job | None:
    """The job if the request's user may see it, else None (the caller answers 404)."""
    job = repository.get_job(session, job_id)
    owner = owner_filter()
    return job if job is not None and (owner is None or job.submitted_by == owner) else None


def list_jobs(
    session: Session, phase: str | None, limit: int, offset: int, owner: str | None = None
) -> tuple[Sequence[Job], int]:
    owner = owner if owner is not None else owner_filter()
    return repository.list_jobs(session, phase, limit, offset, owner=owner)


def cancel(session: Session, job_id: str, owner: str | None = None) -> Job:
    job = get(session, job_id, owner)
    if job.phase in FINISHED_PHASES:
        raise Conflict(f"job {job_id} is already {job.phase}")
    # Conditional updates: a worker may claim the job between our read and our write.
    if not repository.cancel_if_queued(session, job_id):
        repository.request_cancel_if_running(session, job_id)
    session.commit()
    session.refresh(job)
    return job


def resume(
    session: Session,
    settings: Settings,
    publish: Publisher,
    job_id: str,
    max_iters: int | None,
    owner: str | None = None,
) -> Job:
    job = get(session, job_id, owner)
    if job.phase not in FINISHED_PHASES:
        raise Conflict(
            f"job {job_id} is {job.phase}; only completed, failed or cancelled jobs resume"
        )
    check_quotas(session, job.submitted_by, 0)  # a resumed job counts against its owner again
    kind = kind_of(job.kind)
    target = None
    if kind.resume_from == "checkpoint":
        target = checkpoint_resume_target(
            Path(job.out_dir), max_iters, job.max_iters, settings.max_iters_limit, job_id
        )
    spec, target = kind.resume_body(dict(job.spec), target, job.phase)
    return _requeue(session, publish, job, spec, target)


def _requeue(
    session: Session, publish: Publisher, job: Job, spec: dict[str, Any], target: int
) -> Job:
    job_id = job.id
    before = {name: getattr(job, name) for name in _RESUMED_FIELDS}
    # Conditional on the phase this request read: of concurrent resumes exactly one queues the job.
    if not repository.update_if_phase(
        session,
        job_id,
        before["phase"],
        phase="queued",
        spec=spec,
        max_iters=target,
        finished_at=None,
        failure_reason=None,
        cancel_requested=False,
        eta_seconds=None,
        published_at=None,
    ):
        session.rollback()
        raise Conflict(
            f"job {job_id} changed while it was being resumed (another resume?); "
            "GET it to see its phase"
        )
    session.commit()  # the worker must see the row queued before it sees the message
    # Answer with the state this request wrote, as POST /jobs does: a fast worker may claim the
    # job before we could read it back, and the reply should not depend on that race.
    session.refresh(job)
    try:
        publish(job.id)
    except Exception as exc:  # put the job back as it was: a completed job stays completed
        repository.update_job(session, job_id, **before)
        session.commit()
        raise Unavailable(f"{_broker_down(exc)}; job {job_id} left {before['phase']}") from exc
    repository.mark_published(session, job_id)
    session.commit()
    return job


_RESUMED_FIELDS = (
    "phase",
    "spec",
    "max_iters",
    "finished_at",
    "failure_reason",
    "cancel_requested",
    "eta_seconds",
    "published_at",
)


def probe_labels(job: Job) -> list[str]:
    """The labels a job's live probe reports (``probe_r2/<label>`` curves); none without one."""
    section = (job.spec or {}).get("live_probe")
    return [str(label) for label in section.get("labels", [])] if isinstance(section, dict) else []


def curves(
    session: Session, job_id: str, since: int | None, max_points: int, probes: Sequence[str] = ()
) -> Curves:
    """Every curve thinned to ``max_points`` in the database: the cost does not grow with the run.

    ``probes``: the live-probe labels whose R^2 curves to read (see :func:`probe_labels`)."""
    result = Curves(since=since)
    probe_kinds = {f"{PROBE_PREFIX}{label}": label for label in probes}
    read = read_curves(session, job_id, [*CURVE_KINDS, *probe_kinds], since, max_points)
    for kind, curve in read.items():
        result.downsampled |= curve.thinned
        thinned = Curve(steps=curve.steps, values=curve.values)
        if kind in probe_kinds:
            result.probe_r2[probe_kinds[kind]] = thinned
        else:
            setattr(result, kind, thinned)
    return result


def downsample(points: list[tuple[int, float]], max_points: int) -> list[tuple[int, float]]:
    """Evenly spaced points including the first, the last and the lowest (curves stay comparable)."""
    if not points:
        return points
    lowest = min(points, key=lambda point: point[1])
    return thin(points, max_points, keep={points[0], points[-1], lowest})


def progress(job: Job) -> Progress:
    max_iters = max(1, job.max_iters)
    return Progress(
        iteration=job.iteration,
        max_iters=job.max_iters,
        fraction=min(1.0, job.iteration / max_iters),
        tokens_per_s=job.tokens_per_s,
        eta_seconds=job.eta_seconds if job.phase == "running" else None,
        mfu=job.mfu,
        world_size=int((job.resources or {}).get("world_size", 1)),
        effective_batch_size=(job.resources or {}).get("effective_batch_size"),
    )


def summary(job: Job) -> JobSummary:
    return JobSummary(
        id=job.id,
        kind=job.kind,
        phase=job.phase,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progress=progress(job),
        best_val_loss=job.best_val_loss,
        failure_reason=job.failure_reason,
        owner=job.submitted_by,
    )


def checkpoints(job: Job) -> list[CheckpointOut]:
    items = [
        CheckpointOut(
            name=name,
            kind=info.get("kind", name),
            step=int(info.get("step", 0)),
            created_at=info.get("created_at"),
            download_url=f"/jobs/{job.id}/checkpoints/{name}.zip",
        )
        for name, info in (job.checkpoints or {}).items()
        if RunDir(Path(job.out_dir)).checkpoint(name).is_dir()
    ]
    return sorted(items, key=lambda c: (c.step, c.name))


def detail(job: Job, job_curves: Curves, max_attempts: int) -> JobOut:
    base = f"/jobs/{job.id}"
    return JobOut(
        **summary(job).model_dump(),
        updated_at=job.updated_at,
        spec=job.spec,
        device=job.device,
        codec=job.codec,
        n_params=job.n_params,
        attempts=job.attempts,
        best_val_step=job.best_val_step,
        max_attempts=max_attempts,
        interruptions=job.interruptions or [],
        curves=job_curves,
        checkpoints=checkpoints(job),
        resources=job.resources,
        waiting_reason=job.waiting_reason if job.phase in ("queued", "running") else None,
        gpu_memory_peak_bytes=job.gpu_memory_peak_bytes,
        links=Links(
            self=base,
            loss_png=f"{base}/loss.png",
            events=f"{base}/events",
            artifacts=f"{base}/artifacts",
        ),
    )
