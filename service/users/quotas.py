"""Per-user quotas, checked when a user submits or resumes a job: queued + running jobs (429),
disk of their runs (422, with the estimate) and device-hours of their jobs so far (429)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from jobkinds.disk import directory_bytes, gib
from state.errors import SpecInvalid, TooManyJobs
from state.store import repository
from state.store.models import User
from state.store.users import USER_NAME


def device_hours(session: Session, owner: str) -> float:
    """Wall time x processes of every job the user ran (running ones up to now)."""
    from state.store.models import utcnow

    total = 0.0
    now = utcnow()
    for job in repository.jobs_of_owner(session, owner):
        if job.started_at is None:
            continue
        end = job.finished_at or now
        world = int((job.resources or {}).get("world_size", 1))
        total += max(0.0, (end - job.started_at).total_seconds()) * world / 3600
    return total


def disk_bytes(session: Session, owner: str) -> int:
    return sum(
        directory_bytes(Path(job.out_dir))
        for job in repository.jobs_of_owner(session, owner)
        if Path(job.out_dir).is_dir()
    )


def check_quotas(session: Session, owner: str | None, new_bytes: int) -> None:
    """Refuse the user's next job when it would pass one of their quotas (none set: no limit)."""
    if owner is None or not USER_NAME.match(owner):
        return
    user = session.get(User, owner)
    if user is None:
        return
    if user.max_active_jobs is not None:
        active = repository.count_active(session, owner)
        if active >= user.max_active_jobs:
            raise TooManyJobs(
                f"{owner} has {active} queued or running jobs; their quota is "
                f"{user.max_active_jobs} (astropt users add --max-active-jobs): wait or cancel one"
            )
    if user.device_hours_quota is not None:
        used = device_hours(session, owner)
        if used >= user.device_hours_quota:
            raise TooManyJobs(
                f"{owner} has used {used:.2f} device-hours of their quota of "
                f"{user.device_hours_quota:g} (astropt users add --device-hours)"
            )
    if user.disk_quota_gb is not None:
        used = disk_bytes(session, owner)
        quota = int(user.disk_quota_gb * 2**30)
        if used + new_bytes > quota:
            raise SpecInvalid(
                "data",
                f"this job would write about {gib(new_bytes)}; {owner}'s runs hold "
                f"{gib(used)} of their {gib(quota)} disk quota (astropt users add --disk-gb): "
                "delete some of their jobs first",
            )
