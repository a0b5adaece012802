"""``GET /jobs/compare.png?ids=a,b,c``: several runs' validation curves on one figure."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import Response

from astropt.plotting import compare_figure
from service.deps import SessionDep, SettingsDep
from service.jobs import service as jobs
from service.users.auth import TOKEN_ERRORS
from state.errors import ServiceError

MAX_RUNS = 12
PATH = "/jobs/compare.png"
router = APIRouter(tags=["job outputs"])


class CompareInvalid(ServiceError):
    status_code = 422


@router.get(
    PATH,
    response_class=Response,
    summary="Compare runs: validation curves overlaid as a PNG",
    responses={
        200: {"content": {"image/png": {}}, "description": "One colour per job"},
        404: {"description": "Unknown job id"},
        422: {"description": "No or too many ids"},
    },
)
def compare_png(
    session: SessionDep,
    settings: SettingsDep,
    ids: Annotated[
        str,
        Query(
            max_length=MAX_RUNS * 65,
            description="Comma-separated job ids (at most 12)",
            examples=["3f2a...,9c1b..."],
        ),
    ],
) -> Response:
    wanted = list(dict.fromkeys(part.strip() for part in ids.split(",") if part.strip()))
    if not wanted:
        raise CompareInvalid("give one or more job ids: ids=ID1,ID2")
    if len(wanted) > MAX_RUNS:
        raise CompareInvalid(f"at most {MAX_RUNS} jobs can be compared at once, got {len(wanted)}")
    runs = []
    for job_id in wanted:
        job = jobs.get(session, job_id)  # 404 names the unknown id
        curves = jobs.curves(session, job_id, None, settings.curve_max_points)
        runs.append(
            (
                f"{job.id[:8]} ({job.phase})",
                list(zip(curves.train_loss.steps, curves.train_loss.values, strict=True)),
                list(zip(curves.val_loss.steps, curves.val_loss.values, strict=True)),
            )
        )
    png = compare_figure(runs)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


def install_compare(app: FastAPI, dependencies: list[Any] | None = None) -> None:
    """Include the route ahead of ``GET /jobs/{job_id}``, which would otherwise take the path."""
    app.include_router(router, dependencies=dependencies or [], responses=TOKEN_ERRORS)
    routes = app.router.routes
    # (FastAPI >= 0.16x wraps an included router in one entry that keeps ``original_router``)
    mine = [
        route
        for route in routes
        if getattr(route, "path", None) == PATH or getattr(route, "original_router", None) is router
    ]
    for route in mine:
        routes.remove(route)
    routes[0:0] = mine
    app.openapi_schema = None
