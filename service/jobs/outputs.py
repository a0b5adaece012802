"""What a job produces: loss plot, live events, artifacts and checkpoint downloads."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from astropt.plotting import loss_figure
from service.deps import SessionDep, SettingsDep
from service.http.responses import STORE_DOWN
from service.http.schemas import ErrorOut
from service.jobs import artifacts
from service.jobs import service as jobs
from service.jobs.routes import NOT_FOUND
from service.jobs.schemas import ArtifactFile, ArtifactList
from service.jobs.stream_slots import stream_slots
from state.settings import Settings
from state.store import FINISHED_PHASES, session_scope

router = APIRouter(prefix="/jobs", tags=["job outputs"], responses=STORE_DOWN)
KEEPALIVE_SECONDS = 15.0


@router.get(
    "/{job_id}/loss.png",
    response_class=Response,
    summary="Loss curves as a PNG",
    responses={
        200: {"content": {"image/png": {}}, "description": "Train/val loss, lr on a twin axis"},
        **NOT_FOUND,
    },
)
def loss_png(job_id: str, session: SessionDep, settings: SettingsDep) -> Response:
    job = jobs.get(session, job_id)
    curves = jobs.curves(session, job_id, None, settings.curve_max_points, jobs.probe_labels(job))

    def pairs(curve: Any) -> list[tuple[int, float]]:
        return list(zip(curve.steps, curve.values, strict=True))

    png = loss_figure(
        pairs(curves.train_loss),
        pairs(curves.val_loss),
        pairs(curves.lr),
        title=f"job {job.id[:8]} ({job.phase})",
        probes={label: pairs(curve) for label, curve in curves.probe_r2.items()},
    )
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get(
    "/{job_id}/events",
    summary="Live progress (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`progress` events (phase, progress, new curve points) and a "
            "final `end` event when the job finishes.",
        },
        **NOT_FOUND,
        503: {
            "model": ErrorOut,
            "description": "Too many live event streams "
            "(ASTROPT_MAX_EVENT_STREAMS), or the database unavailable; Retry-After",
        },
    },
)
def events(
    job_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> StreamingResponse:
    """At most `ASTROPT_MAX_EVENT_STREAMS` streams are open at once; past it a 503 with
    Retry-After (poll `GET /jobs/{id}` instead)."""
    jobs.get(session, job_id)  # 404 before the stream starts
    slots = stream_slots(request)
    slots.take()
    return StreamingResponse(
        slots.guard(_event_stream(request, settings, job_id)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _snapshot(settings: Settings, job_id: str, since: int | None) -> dict[str, Any] | None:
    with session_scope(settings.resolved_database_url) as session:
        job = jobs.repository.get_job(session, job_id)
        if job is None:
            return None
        curves = jobs.curves(
            session, job_id, since, settings.curve_max_points, jobs.probe_labels(job)
        )
        return {
            "id": job.id,
            "phase": job.phase,
            "updated_at": job.updated_at.isoformat(),
            "progress": jobs.progress(job).model_dump(),
            "best_val_loss": job.best_val_loss,
            "failure_reason": job.failure_reason,
            "curves": curves.model_dump(),
        }


async def _event_stream(request: Request, settings: Settings, job_id: str) -> AsyncIterator[str]:
    since: int | None = None
    last_update = None
    quiet = 0.0
    while not await request.is_disconnected():
        snapshot = await run_in_threadpool(_snapshot, settings, job_id, since)
        if snapshot is None:
            yield _format("end", {"id": job_id, "phase": "deleted"})
            return
        if snapshot["updated_at"] != last_update:
            last_update, quiet = snapshot["updated_at"], 0.0
            # The curves are read one query each, so a later one may already hold the next step:
            # only train_loss (read first, written with lr in one transaction) moves `since`, and
            # it stays one step behind so a val_loss committed just after its step is not skipped.
            # Clients merge by step (a re-sent point is a duplicate, never a gap).
            steps = snapshot["curves"]["train_loss"]["steps"]
            since = max(max(steps) - 1, since or 0) if steps else since
            yield _format("progress", snapshot)
        if snapshot["phase"] in FINISHED_PHASES:
            yield _format("end", {"id": job_id, "phase": snapshot["phase"]})
            return
        await asyncio.sleep(settings.events_poll_seconds)
        quiet += settings.events_poll_seconds
        if quiet >= KEEPALIVE_SECONDS:
            quiet = 0.0
            yield ": keep-alive\n\n"


def _format(event: str, data: dict[str, Any]) -> str:
    # allow_nan=False: a bare NaN would make the event invalid JSON for every client.
    return f"event: {event}\ndata: {json.dumps(_finite(data), default=str, allow_nan=False)}\n\n"


def _finite(value: Any) -> Any:
    """Non-finite floats as null (curves never hold them; a stray job field must not break the stream)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


@router.get(
    "/{job_id}/artifacts",
    response_model=ArtifactList,
    responses={**NOT_FOUND},
    summary="Files in the job's run directory",
)
def list_artifacts(job_id: str, session: SessionDep) -> ArtifactList:
    job = jobs.get(session, job_id)
    files = [
        ArtifactFile(
            path=path, size=size, kind=kind, download_url=f"/jobs/{job_id}/artifacts/{path}"
        )
        for path, size, kind in artifacts.list_files(Path(job.out_dir))
    ]
    return ArtifactList(job_id=job_id, files=files, checkpoints=jobs.checkpoints(job))


@router.get(
    "/{job_id}/artifacts/{path:path}",
    response_class=FileResponse,
    summary="Download one file",
    responses={200: {"content": {"application/octet-stream": {}, "image/png": {}}}, **NOT_FOUND},
)
def download_artifact(job_id: str, path: str, session: SessionDep) -> FileResponse:
    """Validation images (`val_images/step_000020.png`), `loss.csv`, checkpoint files.
    Paths that leave the run directory are refused (404)."""
    job = jobs.get(session, job_id)
    target = artifacts.safe_file(Path(job.out_dir), path)
    return FileResponse(target, filename=target.name)


@router.get(
    "/{job_id}/checkpoints/{name}.zip",
    response_class=FileResponse,
    summary="Download a checkpoint directory as a zip",
    responses={200: {"content": {"application/zip": {}}}, **NOT_FOUND},
)
def download_checkpoint(job_id: str, name: str, session: SessionDep) -> FileResponse:
    """`name` is `best`, `last` or `step_NNNNNN` (see the job's `checkpoints`)."""
    job = jobs.get(session, job_id)
    archive = artifacts.zip_checkpoint(artifacts.checkpoint_dir(Path(job.out_dir), name))
    return FileResponse(
        archive,
        media_type="application/zip",
        filename=f"{job_id}-{name}.zip",
        background=BackgroundTask(archive.unlink, missing_ok=True),
    )
