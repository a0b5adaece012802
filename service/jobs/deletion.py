"""``DELETE /jobs/{id}``: the job's rows and its run directory, once, however many ask at once."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from service.jobs import service as jobs
from state.errors import Conflict, NotFound
from state.settings import Settings
from state.store import FINISHED_PHASES, repository


def delete_finished_job(session: Session, settings: Settings, job_id: str) -> None:
    """404 for an unknown job, another user's, or one another request has just deleted; 409 for
    an active one."""
    job = jobs.get(session, job_id)  # the request's user sees only their own jobs
    if job.phase not in FINISHED_PHASES:
        raise Conflict(f"job {job_id} is {job.phase}; cancel it and wait until it is cancelled")
    out_dir = Path(job.out_dir).resolve()
    if not repository.delete_finished_job(session, job_id):
        session.rollback()
        again = jobs.visible_job(session, job_id)
        if again is None:
            raise NotFound(f"job {job_id} not found (it was deleted by another request)")
        raise Conflict(f"job {job_id} is {again.phase}; cancel it and wait until it is cancelled")
    if out_dir.is_relative_to(settings.runs_dir.resolve()):
        remove_tree(out_dir)
    session.commit()


def remove_tree(directory: Path) -> None:
    """``shutil.rmtree`` that accepts what is already gone (a file removed under it meanwhile)."""

    def gone_is_fine(_: Any, path: str, exc_info: Any) -> None:
        if not isinstance(exc_info[1], FileNotFoundError):
            raise exc_info[1]

    if directory.exists():
        shutil.rmtree(directory, onerror=gone_is_fine)
