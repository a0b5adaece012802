"""A catalogue's galaxies: cut-outs of every row, an object's page (JSON), galleries (JSON or PNG).

Object ids go in the path percent-encoded (``quote(id, safe='')``); ids with slashes (local
cube files in subdirectories) work either way.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from service.catalogues import galaxies, thumbnail_maps
from service.catalogues.galaxy_schemas import GalleryKind, GalleryOut, ObjectOut
from service.catalogues.routes import (
    COMPUTE,
    SERVED,
    OutlierMethod,
    _catalogue_path,
    _compute,
    _png,
)
from service.deps import ApiKey
from state.settings import Settings

router = APIRouter(tags=["catalogues"])
ObjectId = Annotated[
    str, Path(min_length=1, max_length=1024, description="An object id of the catalogue.")
]
CUTOUT: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/png": {}},
        "description": "The galaxy's "
        "96x96 centre crop, noise-aware asinh stretch; header "
        "X-Image-Origin: pixels or codec-decoded",
    }
}


@router.get(
    "/catalogues/{job_id}/objects/{object_id:path}/cutout.png",
    response_class=Response,
    responses={
        **CUTOUT,
        **SERVED,
        409: {
            "description": "The catalogue is not complete, or the row's "
            "image cannot be read back (its source is gone or changed)"
        },
    },
    summary="A catalogue row's galaxy as a small PNG (read from the catalogue's source, cached)",
)
async def cutout(job_id: str, object_id: ObjectId, request: Request) -> Response:
    settings: Settings = request.app.state.settings
    path = await run_in_threadpool(_catalogue_path, settings, job_id)
    png, origin = await run_in_threadpool(galaxies.cutout, path, job_id, object_id)
    return Response(
        png,
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=3600", "X-Image-Origin": origin},
    )


@router.get(
    "/catalogues/{job_id}/objects/{object_id:path}",
    response_model=ObjectOut,
    dependencies=[ApiKey],
    responses=COMPUTE,
    summary="One galaxy: its row, columns, anomaly scores and nearest neighbours",
)
async def object_page(
    job_id: str,
    object_id: ObjectId,
    request: Request,
    k: Annotated[int, Query(ge=1, le=100, description="Neighbours")] = galaxies.OBJECT_NEIGHBOURS,
) -> ObjectOut:
    settings: Settings = request.app.state.settings
    path = await run_in_threadpool(_catalogue_path, settings, job_id)
    return await _compute(settings, galaxies.object_page, settings, path, job_id, object_id, k)


@router.get(
    "/catalogues/{job_id}/gallery",
    response_model=GalleryOut,
    dependencies=[ApiKey],
    responses={200: {"content": {"image/png": {}}}, **COMPUTE},
    summary="A gallery: the most unusual galaxies, an object's neighbours, or a probe's worst-predicted",
)
async def gallery(
    job_id: str,
    request: Request,
    kind: Annotated[
        GalleryKind,
        Query(
            description="outliers, neighbours (of object_id) or "
            "worst (predicted by a ridge probe of label)"
        ),
    ] = "outliers",
    n: Annotated[
        int, Query(ge=1, description="How many (ASTROPT_MAX_OUTLIERS; a PNG shows 64)")
    ] = 24,
    method: OutlierMethod = None,
    object_id: Annotated[str | None, Query(min_length=1, max_length=1024)] = None,
    label: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    format: Annotated[
        Literal["json", "png"], Query(description="json items, or png: a grid of cut-outs")
    ] = "json",
) -> Any:
    settings: Settings = request.app.state.settings
    path = await run_in_threadpool(_catalogue_path, settings, job_id)
    result = await _compute(
        settings, galaxies.gallery, settings, path, job_id, kind, n, method, object_id, label
    )
    if format == "png":
        return _png(await _compute(settings, galaxies.gallery_png, path, result))
    return result


@router.get(
    "/catalogues/{job_id}/gallery.png",
    response_class=Response,
    dependencies=[ApiKey],
    responses={200: {"content": {"image/png": {}}}, **COMPUTE},
    summary="A gallery as one PNG",
)
async def gallery_png(
    job_id: str,
    request: Request,
    kind: Annotated[GalleryKind, Query()] = "outliers",
    n: Annotated[int, Query(ge=1, le=galaxies.GALLERY_MAX)] = 24,
    method: OutlierMethod = None,
    object_id: Annotated[str | None, Query(min_length=1, max_length=1024)] = None,
    label: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
) -> Response:
    return await gallery(job_id, request, kind, n, method, object_id, label, "png")


MapMethod = Annotated[
    Literal["pca", "umap"], Query(description="pca (always), or umap (needs umap-learn)")
]
Grid = Annotated[
    int, Query(ge=1, le=32, description="Cells per side: at most grid x grid thumbnails")
]
Tile = Annotated[int, Query(ge=4, le=96, description="Pixels per thumbnail")]


@router.get(
    "/catalogues/{job_id}/thumbnails.png",
    response_class=Response,
    dependencies=[ApiKey],
    responses={
        200: {
            "content": {"image/png": {}},
            "description": "grid x grid thumbnails at their "
            "map positions (x right, y up; the extent of GET .../thumbnails)",
        },
        **COMPUTE,
    },
    summary="Thumbnail map: the galaxy nearest each grid cell's centre, drawn at its 2-D map position",
)
async def thumbnails_png(
    job_id: str, request: Request, method: MapMethod = "pca", grid: Grid = 16, tile: Tile = 48
) -> Response:
    settings: Settings = request.app.state.settings
    path = await run_in_threadpool(_catalogue_path, settings, job_id)
    return _png(await _compute(settings, thumbnail_maps.sheet, settings, path, method, grid, tile))


@router.get(
    "/catalogues/{job_id}/thumbnails",
    dependencies=[ApiKey],
    responses=COMPUTE,
    summary="The thumbnail map's layout: extent, the object of each cell, every object's position",
)
async def thumbnails(
    job_id: str, request: Request, method: MapMethod = "pca", grid: Grid = 16, tile: Tile = 48
) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    path = await run_in_threadpool(_catalogue_path, settings, job_id)
    return await _compute(
        settings, thumbnail_maps.layout, settings, path, job_id, method, grid, tile
    )
