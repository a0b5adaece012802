"""The dashboard: server-rendered pages at /ui; their scripts talk to the JSON API.

Pages read the store directly for the first render; live parts (the jobs table, curves,
validation images) are then kept fresh by /ui/static/*.js through the public endpoints.
Every page is self-contained (CSP 'self'): nothing is loaded from another host.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from service.catalogues import service as catalogues
from service.deps import SessionDep, SettingsDep
from service.jobs import artifacts
from service.jobs import service as jobs
from service.jobs.schemas import JOB_SPEC_EXAMPLES
from state.store import repository

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'"
)
router = APIRouter(prefix="/ui", include_in_schema=False)


def render(request: Request, template: str, **context: Any) -> HTMLResponse:
    settings = request.app.state.settings
    context.setdefault("needs_key", settings.api_key is not None)
    response = templates.TemplateResponse(request, template, context)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-store"
    return response


SCRIPT_SAFE = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def as_json(model: Any) -> str:
    """JSON for a <script type="application/json"> block: no ``<``, ``>`` or ``&`` appears raw, so
    no user string (``</script>``, or ``<!--<script>``, which would make the parser swallow the
    rest of the page) can end or change the block; ``JSON.parse`` reads the escapes back."""
    data = model.model_dump(mode="json") if hasattr(model, "model_dump") else model
    return json.dumps(data).translate(SCRIPT_SAFE)


@router.get("")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", status_code=307)


@router.get("/jobs")
def jobs_page(
    request: Request, session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> HTMLResponse:
    items, total = jobs.list_jobs(session, None, limit, 0)
    summaries = [jobs.summary(job) for job in items]
    return render(
        request,
        "jobs.html",
        jobs=summaries,
        total=total,
        limit=limit,
        initial=as_json({"items": [s.model_dump(mode="json") for s in summaries]}),
    )


@router.get("/jobs/{job_id}")
def job_page(
    job_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    job = jobs.get(session, job_id)  # 404 for an unknown id
    detail = jobs.detail(
        job, jobs.curves(session, job_id, None, settings.curve_max_points), settings.max_attempts
    )
    images = [
        {"path": path, "step": val_image_step(path)}
        for path, _, kind in artifacts.list_files(Path(job.out_dir))
        if kind == "val_image"
    ]
    patch = (detail.spec.get("model") or {}).get("tokeniser") == "patch"
    return render(
        request,
        "job.html",
        job=detail,
        images=images,
        patch=patch,
        initial=as_json(detail),
        finished=job.phase in ("completed", "failed", "cancelled"),
    )


def val_image_step(path: str) -> int | None:
    """The step of a validation picture (``val_images/step_000020.png`` -> 20)."""
    match = re.search(r"step_(\d+)", path)
    return int(match.group(1)) if match else None


@router.get("/catalogues")
def catalogues_page(
    request: Request, session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> HTMLResponse:
    items, total = catalogues.list_catalogues(session, limit, 0)
    return render(request, "catalogues.html", catalogues=items, total=total)


@router.get("/catalogues/{job_id}")
def catalogue_page(job_id: str, request: Request, session: SessionDep) -> HTMLResponse:
    described = catalogues.describe(catalogues.embed_job(session, job_id))  # 404/409/422 as the API
    manifest = described.manifest
    numeric = [name for name in manifest.get("columns", []) if name != "object_id"]
    mock = (manifest.get("data_source") or {}).get("kind") == "mock"
    return render(
        request,
        "catalogue.html",
        catalogue=described,
        columns=numeric,
        mock=mock,
        initial=as_json({"job_id": job_id, "columns": numeric, "mock": mock}),
    )


@router.get("/reconstruct")
def reconstruct_page(
    request: Request,
    session: SessionDep,
    job_id: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    completed, _ = jobs.list_jobs(session, "completed", 100, 0)
    latest = repository.latest_completed_job(session)
    return render(
        request,
        "reconstruct.html",
        jobs=[jobs.summary(j) for j in completed],
        selected=job_id or (latest.id if latest else None),
    )


@router.get("/sample-galaxy.fits")
def sample_galaxy(index: Annotated[int, Query(ge=0, le=999)] = 0) -> Response:
    """A mock galaxy no model was trained on (the held-out seed), as a g,r,i,z FITS cube in
    nanomaggies: what the reconstruct page sends when the user has no file of their own."""
    import io

    import numpy as np
    from astropy.io import fits

    from astropt.checkpoints.shipped import HELD_OUT_SEED
    from astropt.data.mock import simulate_galaxy

    galaxy = simulate_galaxy(HELD_OUT_SEED, index)
    buffer = io.BytesIO()
    fits.PrimaryHDU(np.asarray(galaxy["flux"], dtype=np.float32)).writeto(buffer)
    return Response(
        buffer.getvalue(),
        media_type="application/fits",
        headers={"Content-Disposition": f'attachment; filename="mock-galaxy-{index}.fits"'},
    )


@router.get("/submit")
def submit_page(request: Request) -> HTMLResponse:
    examples = {
        name: {"summary": example["summary"], "value": json.dumps(example["value"], indent=2)}
        for name, example in openapi_examples(request).items()
    }
    return render(request, "submit.html", examples=examples, first=next(iter(examples), None))


def openapi_examples(request: Request) -> dict[str, dict[str, Any]]:
    """The request examples of POST /jobs as the OpenAPI document states them."""
    try:
        body = request.app.openapi()["paths"]["/jobs"]["post"]["requestBody"]
        return dict(body["content"]["application/json"]["examples"])
    except KeyError:
        return dict(JOB_SPEC_EXAMPLES)
