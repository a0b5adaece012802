"""Catalogues of embed jobs: list, manifest, Parquet download, probes, outliers, map, search.

``POST /search`` takes JSON (``{job_id, object_id, k}``) or an image upload (multipart, through
the same parsing, size and time limits as ``/embed``), embedded with the catalogue's own model.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import Field, ValidationError

from astropt.inference.errors import REQUEST_ERRORS
from astropt.science.anomaly import METHODS
from jobkinds.paths import checked_path
from service.catalogues import service as catalogues
from service.catalogues.schemas import (
    JOB_ID,
    CatalogueList,
    CatalogueOut,
    OutliersOut,
    ProbeRequest,
    SearchOut,
    SearchRequest,
    UploadOrFieldError,
)
from service.deps import ApiKey, SessionDep
from service.http.body_guard import reject_non_finite
from service.http.responses import STORE_DOWN, UPLOAD, Responses, _error
from service.http.schemas import ValidationErrorOut
from service.inference.engine import Work
from service.inference.errors import http_status
from service.inference.routes import (
    InferenceError,
    _Form,
    _multipart_doc,
    _read_request,
    get_engine,
)
from state.settings import Settings
from state.store import session_scope

router = APIRouter(tags=["catalogues"], responses=STORE_DOWN)
JobPath = Annotated[str, Field(pattern=JOB_ID)]
SERVED: Responses = {
    404: _error("Unknown job or object"),
    409: _error("The job has not completed (or its catalogue is gone)"),
    422: {
        "model": ValidationErrorOut,
        "description": "Not an embed job, or an input out of bounds (the "
        "limit is named): field path and reason",
    },
}
COMPUTE: Responses = {
    **SERVED,
    401: _error("Missing or wrong API key"),
    429: _error("Too many catalogue computations at once; Retry-After"),
}
Format = Annotated[
    Literal["json", "png"],
    Query(
        description="json, or png: a mosaic of the galaxies "
        "(mock catalogues: their images are made again)"
    ),
]


OutlierMethod = Annotated[
    Literal[METHODS] | None,
    Query(  # type: ignore[valid-type]
        description="The anomaly score (docs/science.md#anomaly-scores); default surprisal_excess, or knn_cosine "
        "(the ranking before issue #26) where the catalogue has no surprisal column"
    ),
]


def _png(png: bytes) -> Response:
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


def _catalogue_path(settings: Settings, job_id: str) -> Any:
    with session_scope(settings.resolved_database_url) as session:
        return catalogues.directory(catalogues.embed_job(session, job_id))


async def _compute(settings: Settings, fn: Any, *args: Any) -> Any:
    def run() -> Any:
        with catalogues.compute_slot(settings):
            return fn(*args)

    return await run_in_threadpool(run)


@router.get(
    "/catalogues",
    response_model=CatalogueList,
    summary="Catalogues of completed embed jobs (newest first)",
)
def list_catalogues(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> CatalogueList:
    items, total = catalogues.list_catalogues(session, limit, offset)
    return CatalogueList(items=items, total=total, limit=limit, offset=offset)


@router.get(
    "/catalogues/{job_id}",
    response_model=CatalogueOut,
    responses=SERVED,
    summary="A catalogue's manifest (model, codec, data source, pooling, count)",
)
def get_catalogue(job_id: str, session: SessionDep) -> CatalogueOut:
    return catalogues.describe(catalogues.embed_job(session, job_id))


@router.get(
    "/catalogues/{job_id}/catalogue.parquet",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"application/vnd.apache.parquet": {}},
            "description": "The catalogue table",
        },
        **SERVED,
    },
    summary="Download the catalogue (Parquet: object_id, embedding, aperture_flux, columns)",
)
def download_parquet(job_id: str, session: SessionDep) -> FileResponse:
    path = catalogues.parquet_path(session, job_id)
    return FileResponse(
        path, media_type="application/vnd.apache.parquet", filename=f"catalogue-{job_id}.parquet"
    )


@router.post(
    "/catalogues/{job_id}/probe",
    dependencies=[ApiKey],
    summary="Linear probes of catalogue columns",
    responses={
        200: {
            "content": {"application/json": {}, "image/png": {}},
            "description": "ProbeReport JSON, or (format=png) predicted vs true per label",
        },
        **COMPUTE,
    },
)
async def probe(
    job_id: str,
    body: ProbeRequest,
    request: Request,
    format: Annotated[
        Literal["json", "png"], Query(description="json report or png figure")
    ] = "json",
) -> Response:
    """Ridge probes (standardised features, k-fold, R² per label, optional bootstrap interval) of
    the embeddings, beside the shuffled-label control and the aperture-photometry baseline."""
    settings: Settings = request.app.state.settings
    if body.label_table is not None:  # a NUL byte or an over-long name: a 422, never a lookup
        checked_path("label_table", body.label_table, settings.readable_roots)
    path = await run_in_threadpool(_catalogue_path, settings, job_id)
    if format == "png":
        return _png(await _compute(settings, catalogues.probe_png, settings, path, body))
    report, _ = await _compute(settings, catalogues.probe, settings, path, body)
    return JSONResponse({"job_id": job_id, **report})


@router.get(
    "/catalogues/{job_id}/outliers",
    response_model=OutliersOut,
    dependencies=[ApiKey],
    responses={200: {"content": {"image/png": {}}}, **COMPUTE},
    summary="The most unusual galaxies (default: surprisal above its nearest neighbours')",
)
async def outliers(
    job_id: str,
    request: Request,
    n: Annotated[int, Query(ge=1, description="How many (ASTROPT_MAX_OUTLIERS)")] = 20,
    k: Annotated[int, Query(ge=1, description="Neighbours averaged (ASTROPT_MAX_SEARCH_K)")] = 10,
    method: OutlierMethod = None,
    format: Format = "json",
) -> Any:
    settings: Settings = request.app.state.settings
    _query_bound("n", n, settings.max_outliers, "ASTROPT_MAX_OUTLIERS")
    _query_bound("k", k, settings.max_search_k, "ASTROPT_MAX_SEARCH_K")
    path = await run_in_threadpool(_catalogue_path, settings, job_id)
    result = await _compute(settings, catalogues.outliers, settings, path, job_id, n, k, method)
    if format == "png":
        return _png(await _compute(settings, catalogues.outliers_mosaic, path, result))
    return result


@router.get(
    "/catalogues/{job_id}/map.png",
    response_class=Response,
    dependencies=[ApiKey],
    responses={200: {"content": {"image/png": {}}, "description": "PCA or UMAP map"}, **COMPUTE},
    summary="2-D map of the embeddings (PCA; UMAP where umap-learn is installed), coloured by a column",
)
async def map_png(
    job_id: str,
    request: Request,
    color: Annotated[
        str | None, Query(max_length=256, description="A numeric column, or outlier_score")
    ] = None,
    method: Annotated[
        Literal["pca", "umap"],
        Query(description="pca (always), or umap (needs umap-learn; ASTROPT_MAX_UMAP_OBJECTS)"),
    ] = "pca",
    scale: Annotated[
        Literal["linear", "log", "rank"] | None,
        Query(
            description="Colour scale: default rank for outlier_score, linear otherwise; objects "
            "without a value are drawn grey"
        ),
    ] = None,
) -> Response:
    settings: Settings = request.app.state.settings
    path = await run_in_threadpool(_catalogue_path, settings, job_id)
    return _png(
        await _compute(settings, catalogues.map_png, settings, path, job_id, color, method, scale)
    )


def _query_bound(name: str, value: int, limit: int, setting: str) -> None:
    """A query parameter over its service limit: a 422 located in the query, as FastAPI's own."""
    if value > limit:
        raise RequestValidationError(
            [
                {
                    "loc": ("query", name),
                    "type": "less_than_equal",
                    "msg": f"{name} ({value}) exceeds this service's limit of {limit} "
                    f"(setting {setting})",
                }
            ]
        )


class SearchForm(_Form):
    job_id: str = Field(pattern=JOB_ID, description="The embed job whose catalogue is searched.")
    k: int = Field(
        10, ge=1, le=2**31 - 1, description="Neighbours to return (ASTROPT_MAX_SEARCH_K)."
    )


def _search_doc() -> dict[str, Any]:
    doc = _multipart_doc(SearchForm)
    content = doc["requestBody"]["content"]
    content["application/json"] = {"schema": SearchRequest.model_json_schema()}
    return doc


@router.post(
    "/search",
    response_model=SearchOut,
    dependencies=[ApiKey],
    openapi_extra=_search_doc(),
    responses={
        **UPLOAD,
        **COMPUTE,
        200: {"content": {"image/png": {}}},
        422: {
            "model": UploadOrFieldError,
            "description": "An unusable "
            "image or form field, or a field out of bounds (the limit is named)",
        },
    },
    summary="Nearest galaxies in a catalogue: by object id or by image",
)
async def search(request: Request, format: Format = "json") -> Any:
    """JSON `{job_id, object_id, k}`, or multipart with the image in `file` and `job_id`, `k`
    fields: the image is embedded with the catalogue's model, pooling and layer. The k most
    similar objects by cosine similarity, best first, with their catalogue columns;
    `?format=png`: a mosaic of the query and its neighbours."""
    settings: Settings = request.app.state.settings
    if request.headers.get("content-type", "").startswith("application/json"):
        query = _json_query(await _json_body(request, settings.max_json_body_bytes))
        path = await run_in_threadpool(_catalogue_path, settings, query.job_id)
        result = await _compute(
            settings,
            catalogues.search_by_id,
            settings,
            path,
            query.job_id,
            query.object_id,
            query.k,
        )
        if format == "png":
            return _png(await _compute(settings, catalogues.search_mosaic, path, result))
        return result
    params, cube = await _read_request(request, SearchForm, get_engine(request))
    assert isinstance(params, SearchForm)
    if params.checkpoint:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "checkpoint"),
                    "type": "value_error",
                    "msg": "a search uses the catalogue's own model: leave checkpoint out",
                }
            ]
        )
    path = await run_in_threadpool(_catalogue_path, settings, params.job_id)
    recipe = await run_in_threadpool(catalogues.query_recipe, settings, path, params.k)
    vector = await _embed_query(request, recipe, cube)
    result = await _compute(
        settings,
        catalogues.search_by_vector,
        settings,
        path,
        params.job_id,
        vector,
        cube,
        "upload",
        params.k,
    )
    if format == "png":
        return _png(await _compute(settings, catalogues.search_mosaic, path, result, cube))
    return result


async def _embed_query(request: Request, recipe: dict[str, Any], cube: Any) -> Any:
    """The upload embedded as the catalogue's rows were, by the app's inference engine (its
    one model cache, batched with other requests; on the inference queue when it has one)."""
    try:
        result = await get_engine(request).submit(Work("embed", cube=cube, **recipe))
    except REQUEST_ERRORS as exc:
        status = http_status(exc)
        prefix = "the catalogue's model cannot be used: " if status == 409 else ""
        raise InferenceError(
            status, prefix + str(exc), getattr(exc, "retry_after_s", None)
        ) from exc
    return result.value[recipe["pooling"]]


async def _json_body(request: Request, limit: int) -> bytes:
    too_big = InferenceError(
        413,
        f"request body too large: the limit is {limit} bytes (setting ASTROPT_MAX_JSON_BODY_BYTES)",
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    return bytes(body)


def _json_query(body: bytes) -> SearchRequest:
    try:
        json.loads(body or b"null", parse_constant=reject_non_finite)
        return SearchRequest.model_validate_json(body, strict=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from exc
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ("body",), "msg": str(exc), "type": "json_invalid"}]
        ) from exc
