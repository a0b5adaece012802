"""Job endpoints: submit, list, inspect, cancel, resume, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status

from service.deps import ApiKey, PublisherDep, SessionDep, SettingsDep
from service.http.responses import BODY_LIMITS, STORE_DOWN
from service.http.schemas import ErrorOut, ValidationErrorOut
from service.jobs import deletion
from service.jobs import service as jobs
from service.jobs.body import strict_job_body
from service.jobs.schemas import JOB_SPEC_EXAMPLES, JobList, JobOut, JobSpec, Phase, ResumeRequest

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=STORE_DOWN)
MAX_OFFSET = 2**31 - 1
MAX_STEP = 2**62  # steps are 64-bit integers in the store

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "Unknown job id"}
}
AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or wrong API key"}
}
INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationErrorOut, "description": "Invalid input: field path and reason"}
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "Not possible in the job's current phase"}
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobOut,
    dependencies=[ApiKey, Depends(strict_job_body)],
    summary="Submit a training job",
    responses={
        **AUTH,
        **INVALID,
        **BODY_LIMITS,
        429: {"model": ErrorOut, "description": "Too many active jobs"},
        503: {"model": ErrorOut, "description": "Broker unavailable; job recorded as failed"},
    },
)
def submit_job(
    spec: Annotated[JobSpec, Body(openapi_examples=JOB_SPEC_EXAMPLES)],
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    publish: PublisherDep,
) -> JobOut:
    """Validate the training configuration and queue it. `out_dir` is chosen by the service."""
    job = jobs.submit(session, settings, publish, spec)
    request.app.state.metrics.submitted.inc()
    response.headers["Location"] = f"/jobs/{job.id}"
    return jobs.detail(
        job,
        jobs.curves(session, job.id, None, settings.curve_max_points, jobs.probe_labels(job)),
        settings.max_attempts,
    )


@router.get("", response_model=JobList, summary="List jobs (newest first)", responses={**INVALID})
def list_jobs(
    session: SessionDep,
    phase: Annotated[Phase | None, Query(description="Only jobs in this phase")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> JobList:
    items, total = jobs.list_jobs(session, phase, limit, offset)
    return JobList(
        items=[jobs.summary(job) for job in items], total=total, limit=limit, offset=offset
    )


@router.get(
    "/{job_id}",
    response_model=JobOut,
    responses={**NOT_FOUND, **INVALID},
    summary="A job with its curves",
)
def get_job(
    job_id: str,
    session: SessionDep,
    settings: SettingsDep,
    since: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_STEP,
            description="Only curve points after this iteration (incremental polling)",
        ),
    ] = None,
) -> JobOut:
    """Phase, timestamps, spec, device, codec, progress, loss curves (train, val, lr; thinned to
    at most `ASTROPT_CURVE_MAX_POINTS` per curve), best validation loss, checkpoints, failure reason."""
    job = jobs.get(session, job_id)
    return jobs.detail(
        job,
        jobs.curves(session, job_id, since, settings.curve_max_points, jobs.probe_labels(job)),
        settings.max_attempts,
    )


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[ApiKey],
    responses={**AUTH, **NOT_FOUND, **CONFLICT},
    summary="Cancel a job",
)
def cancel_job(job_id: str, session: SessionDep, settings: SettingsDep) -> JobOut:
    """A queued job is cancelled at once; a running one turns `cancelling`, stops at the next
    step, writes its `last` checkpoint and turns `cancelled`."""
    job = jobs.cancel(session, job_id)
    return jobs.detail(
        job,
        jobs.curves(session, job_id, None, settings.curve_max_points, jobs.probe_labels(job)),
        settings.max_attempts,
    )


@router.post(
    "/{job_id}/resume",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[ApiKey],
    responses={**AUTH, **NOT_FOUND, **CONFLICT, **INVALID, **BODY_LIMITS},
    summary="Resume a finished job from its last checkpoint",
)
def resume_job(
    job_id: str,
    session: SessionDep,
    settings: SettingsDep,
    publish: PublisherDep,
    body: Annotated[ResumeRequest | None, Body()] = None,
) -> JobOut:
    """Queue a completed, cancelled or failed job again; it continues from `checkpoints/last`.
    Give `max_iters` to train a completed job further (a fine-tune job: its new `finetune.steps`);
    training and fine-tune jobs alike continue exactly where they stopped."""
    job = jobs.resume(session, settings, publish, job_id, body.max_iters if body else None)
    return jobs.detail(
        job,
        jobs.curves(session, job_id, None, settings.curve_max_points, jobs.probe_labels(job)),
        settings.max_attempts,
    )


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[ApiKey],
    responses={**AUTH, **NOT_FOUND, **CONFLICT},
    summary="Delete a finished job and its artifacts",
)
def delete_job(job_id: str, session: SessionDep, settings: SettingsDep) -> Response:
    """Concurrent deletes of one job: one 204, the others 404."""
    deletion.delete_finished_job(session, settings, job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
