"""``POST /reconstruct``, ``/embed`` and ``/predict``: a galaxy image in, a reconstruction, an
embedding or a fine-tune's label predictions out.

The body is read here, not by FastAPI's form parsing, so an oversized upload is refused (413)
from its Content-Length or while it streams in, before it is spooled anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import FormData, UploadFile

from astropt.checkpoints.shipped import SHIPPED_MODEL_DIR
from astropt.constants import DEFAULT_BANDS
from astropt.images import Cube
from astropt.inference.errors import REQUEST_ERRORS
from astropt.inference.pipeline import Pooling, Reconstruction, ReconstructOptions
from astropt.inference.render import render_png, to_fits, to_npy
from astropt.inference.uploads import InputError, UploadLimits, parse_upload
from astropt.pooling import DEFAULT_CENTRE, DEFAULT_POOL
from service.deps import ApiKey
from service.http.responses import UPLOAD
from service.inference.engine import BatchResult, InferenceEngine, Work, ensure_engine
from service.inference.errors import http_status
from service.jobs import artifacts
from service.users.context import owner_filter
from state.errors import ServiceError
from state.settings import Settings
from state.store import repository as store
from state.store import session_scope

log = logging.getLogger(__name__)
router = APIRouter(tags=["inference"])
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small fields around the file
SHIPPED_JOB_ID = "shipped"  # what responses name the packaged pretrained model by
SHIPPED_MODEL_WEIGHTS = SHIPPED_MODEL_DIR / "model.safetensors"


class InferenceError(ServiceError):
    def __init__(self, status: int, detail: str, retry_after_s: float | None = None):
        super().__init__(detail)
        self.status_code = status
        if retry_after_s is not None:
            self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


class _Form(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job_id: str | None = Field(
        None, max_length=64, description="A job: its best checkpoint is used."
    )
    checkpoint: str | None = Field(None, description="best | last | step_NNNNNN of that job.")
    bands: str | None = Field(None, description="Comma-separated bands of the file, e.g. 'g,r,z'.")


class ReconstructForm(_Form):
    mode: Literal["codec", "predict", "complete", "masked"] = "predict"
    keep_fraction: float = Field(0.5, gt=0.0, le=1.0)
    temperature: float = Field(1.0, ge=0.0, le=100.0)
    top_k: int | None = Field(None, ge=1, le=10_000)
    seed: int | None = Field(None, ge=0, lt=2**63)
    panel: Literal["all", "single"] = "all"
    format: Literal["png", "fits", "npy", "json"] = "png"


class EmbedForm(_Form):
    pooling: Pooling = Field(
        DEFAULT_POOL,
        description="mean | last | centre (the central k x k "
        "tokens, see centre) | both (mean and last). The default is the "
        "pooling of embed jobs and live probes.",
    )
    centre: int = Field(
        DEFAULT_CENTRE,
        ge=1,
        le=23,
        description="k of the centre pooling, in AION "
        "tokens (4 px each; a patch model pools the patches over those pixels).",
    )


class PredictForm(_Form):
    job_id: str | None = Field(
        None,
        max_length=64,
        description="A fine-tune job (default: the latest "
        "completed one); its best checkpoint is used.",
    )
    labels: str | None = Field(
        None,
        max_length=4096,
        description="Comma-separated labels to return "
        "(default: every label the job was trained on).",
    )


def _multipart_doc(form: type[BaseModel]) -> dict[str, Any]:
    properties: dict[str, Any] = {"file": {"type": "string", "format": "binary"}}
    for name, schema in form.model_json_schema()["properties"].items():
        properties[name] = schema
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": ["file"], "properties": properties}
                }
            },
        }
    }


def get_engine(request: Request) -> InferenceEngine:
    """The app's engine (built in its lifespan from its inference settings, service.app)."""
    return ensure_engine(request.app)


async def _read_form(request: Request, limit: int) -> FormData:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise InferenceError(
            415,
            "send multipart/form-data with the image in the 'file' field "
            "(curl -F file=@galaxy.fits ...)",
        )
    declared = request.headers.get("content-length", "")
    too_big = f"upload too large: the limit is {limit} bytes"
    if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise InferenceError(413, too_big)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit + FORM_OVERHEAD:
            raise InferenceError(413, too_big)

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    try:
        return await Request(request.scope, replay).form(max_files=1, max_fields=16)
    except Exception as exc:  # starlette raises HTTPException/MultiPartException for bad bodies
        raise InferenceError(
            400, f"malformed multipart body: {getattr(exc, 'detail', exc)}"
        ) from exc


def _upload_slots(request: Request, engine: InferenceEngine) -> asyncio.Semaphore:
    slots = getattr(request.app.state, "inference_upload_slots", None)
    if slots is None:
        slots = asyncio.Semaphore(engine.settings.max_concurrent_uploads)
        request.app.state.inference_upload_slots = slots
    return slots


async def _read_request(
    request: Request, form_type: type[_Form], engine: InferenceEngine
) -> tuple[_Form, Cube]:
    # The body arrives first (bounded in size and, by BodyGuard, in time) without a slot, so slow
    # clients cannot hold slots. Inflated images are parsed under a slot; bodies waiting for one
    # are held in memory, so how many may wait is bounded too (429).
    limits = engine.settings.upload_limits()
    form = await _read_form(request, limits.max_upload_bytes)
    slots, state = _upload_slots(request, engine), request.app.state
    waiting = getattr(state, "inference_uploads_waiting", 0)
    if slots.locked() and waiting >= engine.settings.max_waiting_uploads:
        raise InferenceError(
            429,
            f"{waiting} uploads are already waiting to be parsed; retry shortly",
            retry_after_s=1.0,
        )
    state.inference_uploads_waiting = waiting + 1
    try:
        await slots.acquire()
    finally:
        state.inference_uploads_waiting -= 1
    try:
        return await _parse(form, form_type, limits)
    finally:
        slots.release()


async def _parse(form: FormData, form_type: type[_Form], limits: Any) -> tuple[_Form, Cube]:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InferenceError(422, "no file: send the image in a multipart field named 'file'")
    fields = {
        k: v for k, v in form.multi_items() if k != "file" and isinstance(v, str) and v.strip()
    }
    try:
        params = form_type(**fields)
    except ValidationError as exc:
        issues = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InferenceError(422, f"invalid form field(s): {issues}") from exc
    data = await upload.read()
    try:
        cube = await run_in_threadpool(
            _parse_crop, data, upload.filename or "", params.bands, limits
        )
    except InputError as exc:  # 503 (the inflate budget is spent) says when to retry
        raise InferenceError(
            http_status(exc), exc.message, getattr(exc, "retry_after_s", None)
        ) from exc
    return params, cube


def _parse_crop(data: bytes, name: str, bands: str | None, limits: UploadLimits) -> Cube:
    """The checked upload, kept as its 96x96 crop only: a queued request holds 147 KiB, not the
    full image (up to max_side^2 pixels per band)."""
    return parse_upload(data, name, bands, limits).central_crop()


def resolve_checkpoint(
    settings: Settings,
    job_id: str | None,
    name: str | None,
    kind: Literal["train", "finetune"] = "train",
) -> tuple[str, str, Path]:
    """(job id, checkpoint name, directory) of the model a request asks for; without a job id,
    the latest completed job of ``kind`` (training jobs for /reconstruct and /embed, fine-tune
    jobs for /predict)."""
    owner = owner_filter()  # a user's requests use their own jobs' models (others': 404)
    with session_scope(settings.resolved_database_url) as session:
        job = (
            store.get_job(session, job_id)
            if job_id
            else store.latest_completed_job(session, kind, owner)
        )
        if job is not None and owner is not None and job.submitted_by != owner:
            job = None
        if kind == "finetune":
            return _finetune_checkpoint(session, job, job_id, name)
        if job is None and not job_id and not name and SHIPPED_MODEL_WEIGHTS.is_file():
            # No job has finished yet: the pretrained model shipped in the package answers,
            # and the response says so (X-Job-Id / job_id "shipped").
            return SHIPPED_JOB_ID, SHIPPED_JOB_ID, SHIPPED_MODEL_DIR
        if job is None:
            if job_id:
                raise InferenceError(404, f"job {job_id} not found")
            raise InferenceError(
                404,
                "no completed training job to take a model from: train one "
                "with POST /jobs (e.g. the tiny-cpu example) and retry when it has "
                "completed, or pass job_id (and checkpoint) of another job",
            )
        if name:
            return job.id, name, artifacts.checkpoint_dir(Path(job.out_dir), name)
        if job.phase != "completed":
            raise InferenceError(
                409,
                f"job {job.id} is {job.phase}: by default only a completed job's "
                "best checkpoint is used; wait for it, or pass checkpoint=last or "
                "checkpoint=step_NNNNNN to use one it has written",
            )
        directory = store.best_checkpoint_dir(session, job.id)
        if directory is None:
            raise InferenceError(409, f"job {job.id} completed without a checkpoint to load")
        return job.id, directory.name, directory


def _finetune_checkpoint(
    session: Any, job: Any, job_id: str | None, name: str | None
) -> tuple[str, str, Path]:
    if job is None:
        if job_id:
            raise InferenceError(404, f"job {job_id} not found")
        raise InferenceError(
            404,
            "no completed fine-tune job to predict with: submit one with POST "
            "/jobs (kind 'finetune', e.g. the finetune-lora example) and retry when "
            "it has completed, or pass job_id",
        )
    if job.kind != "finetune":
        raise InferenceError(
            422,
            f"job {job.id} is a {job.kind} job; /predict needs a fine-tune job "
            "(kind 'finetune'), whose checkpoint has a task head",
        )
    if name:
        return job.id, name, artifacts.checkpoint_dir(Path(job.out_dir), name)
    if job.phase != "completed":
        raise InferenceError(
            409,
            f"job {job.id} is {job.phase}: only a completed fine-tune job's best "
            "checkpoint is used by default; wait for it",
        )
    directory = store.best_checkpoint_dir(session, job.id)
    if directory is None:
        raise InferenceError(409, f"job {job.id} completed without a checkpoint to load")
    return job.id, directory.name, directory


async def _run(
    request: Request,
    engine: InferenceEngine,
    work_kind: str,
    params: _Form,
    cube: Cube,
    **work_args: Any,
) -> tuple[str, str, BatchResult]:
    settings: Settings = request.app.state.settings
    kind = "finetune" if work_kind == "predict" else "train"
    job_id, name, directory = await run_in_threadpool(
        resolve_checkpoint, settings, params.job_id, params.checkpoint, kind
    )
    try:
        result = await engine.submit(Work(work_kind, directory, cube, **work_args))
    except REQUEST_ERRORS as exc:
        status = http_status(exc)
        prefix = f"the model of job {job_id} ({name}) cannot be used: " if status == 409 else ""
        raise InferenceError(
            status, prefix + str(exc), getattr(exc, "retry_after_s", None)
        ) from exc
    except Exception as exc:  # the image could not be processed; never a bare 500
        log.exception("inference failed")
        raise InferenceError(
            422, f"this image could not be processed: {type(exc).__name__}: {exc}"
        ) from exc
    return job_id, name, result


def _number(value: float | None) -> str:
    return "nan" if value is None or not math.isfinite(value) else f"{value:.6g}"


@router.post(
    "/reconstruct",
    summary="Reconstruct a galaxy image through the codec and a model",
    dependencies=[ApiKey],
    openapi_extra=_multipart_doc(ReconstructForm),
    response_class=Response,
    responses={
        200: {
            "content": {
                "image/png": {},
                "application/fits": {},
                "application/octet-stream": {},
                "application/json": {},
            },
            "description": "PNG panel (metrics in X-* headers), FITS, .npy or JSON",
        },
        **UPLOAD,
    },
)
async def reconstruct_image(request: Request) -> Response:
    start = time.perf_counter()
    engine = get_engine(request)
    params, cube = await _read_request(request, ReconstructForm, engine)
    read_s = time.perf_counter() - start
    assert isinstance(params, ReconstructForm)
    options = ReconstructOptions(
        params.mode, params.keep_fraction, params.temperature, params.top_k, params.seed
    )
    job_id, name, result = await _run(request, engine, "reconstruct", params, cube, options=options)
    recon: Reconstruction = result.value
    headers = {
        "X-Job-Id": job_id,
        "X-Checkpoint": name,
        "X-Mode": recon.mode,
        "X-Token-Accuracy": _number(recon.token_accuracy),
        "X-MSE": _number(recon.mse),
        "X-Codec-MSE": _number(recon.codec_mse),
        "X-Batch-Size": str(result.batch_size),
        "X-Warnings": " | ".join(recon.warnings).encode("ascii", "replace").decode(),
        "Cache-Control": "no-store",
    }
    timings = {"read": read_s, "queue": result.queued_s, "compute": result.compute_s}
    if params.format == "json":
        body = {
            **_json_metrics(recon),
            "job_id": job_id,
            "checkpoint": name,
            "codec": result.codec_info,
            "output_bands": list(DEFAULT_BANDS),
            "shape": list(recon.output.shape),
            "flux": recon.output.round(7).tolist(),
            "tokens": recon.tokens.tolist(),
            "model_tokens": None if recon.model_tokens is None else recon.model_tokens.tolist(),
        }
        return JSONResponse(body, headers=_timed(headers, timings, start))
    if params.format == "png":
        png = await run_in_threadpool(render_png, recon, params.panel)
        return Response(png, media_type="image/png", headers=_timed(headers, timings, start))
    serialise, media, suffix = (
        (to_fits, "application/fits", "fits")
        if params.format == "fits"
        else (to_npy, "application/octet-stream", "npy")
    )
    headers["Content-Disposition"] = f'attachment; filename="reconstruction-{recon.mode}.{suffix}"'
    content = await run_in_threadpool(serialise, recon)
    return Response(content, media_type=media, headers=_timed(headers, timings, start))


def _timed(headers: dict[str, str], timings: dict[str, float], start: float) -> dict[str, str]:
    """Add a ``Server-Timing`` header (milliseconds per stage, ``total`` included)."""
    timings = {**timings, "total": time.perf_counter() - start}
    headers["Server-Timing"] = ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in timings.items())
    return headers


def _json_metrics(recon: Reconstruction) -> dict[str, Any]:
    def clean(value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None

    return {
        "mode": recon.mode,
        "bands": list(recon.bands),
        "token_accuracy": clean(recon.token_accuracy),
        "mse": clean(recon.mse),
        "codec_mse": clean(recon.codec_mse),
        "warnings": recon.warnings,
    }


@router.post(
    "/embed",
    summary="Embed a galaxy image with a model (pooled hidden states)",
    dependencies=[ApiKey],
    openapi_extra=_multipart_doc(EmbedForm),
    responses=UPLOAD,
)
async def embed_image(request: Request) -> JSONResponse:
    engine = get_engine(request)
    params, cube = await _read_request(request, EmbedForm, engine)
    assert isinstance(params, EmbedForm)
    job_id, name, result = await _run(
        request, engine, "embed", params, cube, pooling=params.pooling, centre=params.centre
    )
    vectors = {k: [float(x) for x in v] for k, v in result.value.items()}
    return JSONResponse(
        {
            "job_id": job_id,
            "checkpoint": name,
            "pooling": params.pooling,
            "centre": params.centre if params.pooling == "centre" else None,
            "bands": list(cube.bands),
            "dim": len(next(iter(vectors.values()))),
            "embedding": vectors,
            "warnings": cube.warnings,
            "codec": result.codec_info,
        },
        headers={"X-Batch-Size": str(result.batch_size)},
    )


@router.post(
    "/predict",
    summary="Predict the labels of a fine-tune job for a galaxy image",
    dependencies=[ApiKey],
    openapi_extra=_multipart_doc(PredictForm),
    responses=UPLOAD,
)
async def predict_labels(request: Request) -> JSONResponse:
    """The image is embedded exactly as /embed does it, then the fine-tune's task head answers:
    regression labels in their own units, classification labels as the likeliest class with the
    probabilities of all classes."""
    engine = get_engine(request)
    params, cube = await _read_request(request, PredictForm, engine)
    assert isinstance(params, PredictForm)
    job_id, name, result = await _run(request, engine, "predict", params, cube)
    prediction = result.value
    wanted = [x.strip() for x in (params.labels or "").split(",") if x.strip()] or list(
        prediction.values
    )
    unknown = [label for label in wanted if label not in prediction.values]
    if unknown:
        raise InferenceError(
            422,
            f"unknown label(s) {unknown} for job {job_id}; valid labels: "
            f"{', '.join(prediction.values)}",
        )
    return JSONResponse(
        {
            "job_id": job_id,
            "checkpoint": name,
            "task": prediction.task,
            "bands": list(cube.bands),
            "predictions": {k: prediction.values[k] for k in wanted},
            "probabilities": {k: v for k, v in prediction.probabilities.items() if k in wanted},
            "warnings": cube.warnings,
            "codec": result.codec_info,
        },
        headers={"X-Batch-Size": str(result.batch_size)},
    )


@router.get("/inference/stats", summary="Inference engine state: device, threads, batch sizes run")
async def inference_stats(request: Request) -> dict[str, Any]:
    return get_engine(request).stats()
