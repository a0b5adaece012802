"""Catalogues of embed jobs in the service layer: find them, probe them, search them, map them.

A catalogue is served only from a completed ``kind: embed`` job (its ``catalogue/`` directory
with a manifest is complete by construction). Loaded catalogues and their FAISS indexes are
kept in a small LRU cache keyed by the manifest's modification time. The compute (probes,
maps, outlier scores, embedding an upload) runs on the API's thread pool, at most
``max_concurrent_science`` at once per process: more get 429.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from jobkinds.checks import inside, roots_text
from jobkinds.kinds.embed import catalogue_dir
from service.catalogues.schemas import (
    CatalogueLinks,
    CatalogueOut,
    Neighbour,
    Outlier,
    OutliersOut,
    ProbeRequest,
    SearchOut,
)
from service.jobs.service import visible_job
from service.users.context import owner_filter
from state.errors import Conflict, NotFound, SpecInvalid, TooManyJobs
from state.settings import Settings
from state.store import repository
from state.store.models import Job

CACHE_SIZE = 4  # catalogues (with their indexes) kept loaded per API process
OUTLIER_K = 10  # neighbours an outlier score averages over


@dataclass
class Loaded:
    catalogue: Any  # astropt.science.Catalogue
    index: Any  # astropt.science.SimilarityIndex
    outliers: dict[tuple[str, int], np.ndarray]  # (method, k) -> scores, computed on first use
    images: Any = (
        None  # astropt.science.cutouts.RowImages, made on first use (service.catalogues.galaxies)
    )
    maps: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # method -> 2-D map, made on first use


_cache: OrderedDict[tuple[str, int], Loaded] = OrderedDict()
_cache_lock = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}


@contextmanager
def compute_slot(settings: Settings) -> Iterator[None]:
    """One of the process's ``max_concurrent_science`` slots, or 429 at once."""
    with _cache_lock:
        slots = _slots.setdefault(
            settings.max_concurrent_science,
            threading.BoundedSemaphore(settings.max_concurrent_science),
        )
    if not slots.acquire(blocking=False):
        error = TooManyJobs(
            f"{settings.max_concurrent_science} catalogue computations are running; retry "
            "shortly (setting ASTROPT_MAX_CONCURRENT_SCIENCE)"
        )
        error.headers = {"Retry-After": "2"}
        raise error
    try:
        yield
    finally:
        slots.release()


def embed_job(session: Session, job_id: str) -> Job:
    """A completed embed job; 404 / 422 / 409 with the reason otherwise."""
    job = visible_job(session, job_id)  # as the request's user sees it (others': 404)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    if job.kind != "embed":
        raise SpecInvalid(
            "job_id",
            f"job {job_id} is a {job.kind} job; catalogues come from embed jobs "
            "(POST /jobs with kind 'embed')",
        )
    if job.phase != "completed":
        raise Conflict(
            f"job {job_id} is {job.phase}: its catalogue is served once the job has completed"
        )
    return job


def directory(job: Job) -> Path:
    from astropt.science.catalogue import read_manifest

    path = catalogue_dir(job.out_dir)
    if read_manifest(path) is None:
        raise Conflict(
            f"job {job.id} completed but its catalogue is missing (was it removed by hand?)"
        )
    return path


def parquet_path(session: Session, job_id: str) -> Path:
    from astropt.science.catalogue import CATALOGUE_FILE

    return directory(embed_job(session, job_id)) / CATALOGUE_FILE


def describe(job: Job) -> CatalogueOut:
    from astropt.science.catalogue import CATALOGUE_FILE, read_manifest

    path = directory(job)
    manifest = read_manifest(path) or {}
    base = f"/catalogues/{job.id}"
    return CatalogueOut(
        job_id=job.id,
        count=int(manifest.get("count", 0)),
        embedding_dim=int(manifest.get("embedding_dim", 0)),
        created_at=job.created_at,
        finished_at=job.finished_at,
        size_bytes=(path / CATALOGUE_FILE).stat().st_size,
        manifest=manifest,
        links=CatalogueLinks(
            self=base,
            parquet=f"{base}/catalogue.parquet",
            probe=f"{base}/probe",
            outliers=f"{base}/outliers",
            map_png=f"{base}/map.png",
        ),
    )


def list_catalogues(session: Session, limit: int, offset: int) -> tuple[list[CatalogueOut], int]:
    jobs, total = repository.list_jobs(
        session, "completed", limit, offset, kind="embed", owner=owner_filter()
    )
    items = []
    for job in jobs:
        try:
            items.append(describe(job))
        except Conflict:  # removed by hand: listed as nothing rather than failing the list
            total -= 1
    return items, total


def load(path: Path) -> Loaded:
    from astropt.science import SimilarityIndex, read_catalogue
    from astropt.science.catalogue import MANIFEST_FILE

    key = (str(path), (path / MANIFEST_FILE).stat().st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    catalogue = read_catalogue(path)
    loaded = Loaded(catalogue, SimilarityIndex.from_catalogue(catalogue), {})
    with _cache_lock:
        _cache[key] = loaded
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return loaded


def _bound(field: str, value: int, settings: Settings, setting: str) -> None:
    limit = getattr(settings, setting)
    if value > limit:
        raise SpecInvalid(
            field,
            f"{field} ({value}) exceeds this service's limit of {limit} "
            f"(setting ASTROPT_{setting.upper()})",
        )


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null; numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def row_columns(loaded: Loaded, row: int) -> dict[str, Any]:
    return {
        name: _clean(values[row])
        for name, values in loaded.catalogue.columns.items()
        if values.ndim == 1
    }


def _check_labels(catalogue: Any, labels: Sequence[str], categorical: Sequence[str] = ()) -> None:
    from astropt.science.catalogue import CatalogueError

    stray = sorted(set(categorical) - set(labels))
    if stray:
        raise SpecInvalid(
            "categorical", f"categorical names {stray}, which are not among the labels"
        )
    for label in labels:
        try:
            if label in categorical or catalogue.is_categorical(label):
                catalogue.classes(label)
            else:
                catalogue.label(label)
        except CatalogueError as exc:
            raise SpecInvalid(
                "categorical" if label in categorical else "labels", f"label {label!r}: {exc}"
            ) from exc


def _with_label_table(settings: Settings, catalogue: Any, table: str | None) -> Any:
    """The catalogue with a user's label table joined on (a 422 naming ``label_table``)."""
    from astropt.science.catalogue import CatalogueError
    from astropt.science.label_tables import join_labels, read_label_table

    if table is None:
        return catalogue
    if not inside(Path(table), settings.readable_roots):
        raise SpecInvalid(
            "label_table",
            f"label_table ({table}) is outside the allowed data roots: "
            f"{roots_text(settings.readable_roots)}",
        )
    try:
        return join_labels(
            catalogue, read_label_table(Path(table).expanduser().resolve()), f"label table {table}"
        )
    except CatalogueError as exc:
        raise SpecInvalid("label_table", str(exc)) from exc


def probe(settings: Settings, path: Path, request: ProbeRequest) -> tuple[dict[str, Any], Any]:
    """The probe report and the catalogue it probed (with the label table, if any)."""
    from astropt.science import probe_catalogue

    _bound("labels", len(request.labels), settings, "max_probe_labels")
    _bound("folds", request.folds, settings, "max_probe_folds")
    _bound("bootstrap", request.bootstrap, settings, "max_probe_bootstrap")
    catalogue = _with_label_table(settings, load(path).catalogue, request.label_table)
    _check_labels(catalogue, request.labels, request.categorical)
    if len(catalogue) < 2 * request.folds:
        raise SpecInvalid(
            "folds",
            f"the catalogue has {len(catalogue)} rows: too few for "
            f"{request.folds}-fold cross-validation",
        )
    try:
        report = probe_catalogue(
            catalogue,
            list(request.labels),
            aperture=request.aperture,
            folds=request.folds,
            alpha=request.alpha,
            seed=request.seed,
            bootstrap=request.bootstrap,
            shuffled=request.shuffled,
            categorical=list(request.categorical),
        )
    except ValueError as exc:  # e.g. a label with too few finite values
        raise SpecInvalid("labels", str(exc)) from exc
    body = _clean(report.to_dict())
    body["catalogue"] = str(path.parent.name)
    return body, catalogue


def probe_png(settings: Settings, path: Path, request: ProbeRequest) -> bytes:
    from astropt.science.figures import probe_figure

    body, catalogue = probe(
        settings,
        path,
        request.model_copy(update={"bootstrap": 0, "shuffled": False, "aperture": False}),
    )
    scores = body["features"][0]["scores"]
    r2 = {
        label: scores[label]["r2_mean"] if scores[label]["r2_mean"] is not None else math.nan
        for label in request.labels
    }
    return probe_figure(
        catalogue,
        request.labels,
        r2,
        folds=request.folds,
        alpha=request.alpha,
        seed=request.seed,
        categorical=request.categorical,
    )


def _neighbours(loaded: Loaded, hits: Sequence[Any]) -> list[Neighbour]:
    return [
        Neighbour(
            rank=h.rank,
            object_id=h.object_id,
            score=float(h.score),
            columns=row_columns(loaded, int(loaded.index.row_of(h.object_id))),
        )
        for h in hits
    ]


def search_by_id(settings: Settings, path: Path, job_id: str, object_id: str, k: int) -> SearchOut:
    _bound("k", k, settings, "max_search_k")
    loaded = load(path)
    try:
        hits = loaded.index.query_id(object_id, k)
    except KeyError as exc:
        raise NotFound(f"object {object_id!r} is not in the catalogue of job {job_id}") from exc
    return SearchOut(
        job_id=job_id, query={"object_id": object_id}, k=k, neighbours=_neighbours(loaded, hits)
    )


def query_recipe(settings: Settings, path: Path, k: int) -> dict[str, Any]:
    """How an uploaded image is embedded into the catalogue's space (its model or random-init
    baseline, pooling, layer, and the inputs its rows were read as): the arguments of the
    inference engine's embed request (``checkpoint`` and the rest). ``k`` is checked first."""
    from astropt.pooling import DEFAULT_CENTRE

    _bound("k", k, settings, "max_search_k")
    manifest = load(path).catalogue.manifest
    described = manifest.get("model") or {}
    checkpoint = manifest.get("checkpoint")
    if not checkpoint or not Path(checkpoint).is_dir():
        raise Conflict(
            f"the catalogue's model ({checkpoint}) is no longer on this machine; search it by "
            "object_id instead"
        )
    return {
        "checkpoint": Path(checkpoint),
        "pooling": manifest["pooling"],
        "centre": int(manifest.get("centre") or DEFAULT_CENTRE),
        "layer": int(manifest["layer"]),
        "random_init": described.get("seed") if described.get("kind") == "random-init" else None,
        "reads": manifest.get("inputs")
        or {"tokeniser": "aion", "codec": (manifest.get("codec") or {}).get("fingerprint")},
    }


def search_by_vector(
    settings: Settings, path: Path, job_id: str, vector: Any, cube: Any, filename: str, k: int
) -> SearchOut:
    """The neighbours of an upload's embedding (made by the inference engine from
    :func:`query_recipe`)."""
    _bound("k", k, settings, "max_search_k")
    loaded = load(path)
    hits = loaded.index.query_vector(np.asarray(vector, dtype=np.float32), k)
    query = {"upload": filename, "bands": list(cube.bands), "warnings": list(cube.warnings)}
    return SearchOut(job_id=job_id, query=query, k=k, neighbours=_neighbours(loaded, hits))


def outlier_method(loaded: Loaded, method: str | None) -> str:
    """The method asked for, or the catalogue's default (surprisal_excess where it has a surprisal)."""
    from astropt.science.anomaly import NEEDS_SURPRISAL, default_method
    from astropt.science.surprisal import SURPRISAL_COLUMN

    has = SURPRISAL_COLUMN in loaded.catalogue.columns
    if method is None:
        return default_method(has)
    if method in NEEDS_SURPRISAL and not has:
        raise SpecInvalid(
            "method",
            f"method {method!r} needs a surprisal column, which this catalogue lacks "
            "(embedded by a patch or masked-objective model, or before surprisals were stored); "
            f"use {default_method(False)!r}",
        )
    return method


def outlier_scores(loaded: Loaded, k: int, method: str | None = None) -> np.ndarray:
    """Anomaly scores of every row (larger: more unusual); cached per (method, k)."""
    from astropt.science.anomaly import anomaly_scores
    from astropt.science.surprisal import SURPRISAL_COLUMN

    method = outlier_method(loaded, method)
    if (method, k) not in loaded.outliers:
        surprisal = loaded.catalogue.columns.get(SURPRISAL_COLUMN)
        scores = anomaly_scores(
            method,
            loaded.catalogue.embeddings,
            surprisal,
            k,  # knn_cosine: the search
            knn=lambda: loaded.index.outlier_scores(k).astype(np.float64),
        )  # index's (HNSW >20k)
        loaded.outliers[(method, k)] = scores
    return loaded.outliers[(method, k)]


def outliers(
    settings: Settings, path: Path, job_id: str, n: int, k: int, method: str | None = None
) -> OutliersOut:
    _bound("n", n, settings, "max_outliers")
    _bound("k", k, settings, "max_search_k")
    loaded = load(path)
    method = outlier_method(loaded, method)
    scores = outlier_scores(loaded, k, method)
    order = np.argsort(-scores, kind="stable")[:n]
    items = [
        Outlier(
            rank=rank,
            object_id=str(loaded.index.object_ids[i]),
            outlier_score=float(scores[i]),
            columns=row_columns(loaded, int(i)),
        )
        for rank, i in enumerate(order)
    ]
    return OutliersOut(job_id=job_id, k=k, method=method, items=items)


def map_xy(settings: Settings, loaded: Loaded, method: str) -> np.ndarray:
    """The catalogue's 2-D map (``pca`` or ``umap``), made once per loaded catalogue."""
    from astropt.science.search import MapUnavailable, embedding_map

    if method == "umap" and len(loaded.catalogue) > settings.max_umap_objects:
        raise SpecInvalid(
            "method",
            f"the catalogue has {len(loaded.catalogue)} objects, more than this service "
            f"maps with UMAP ({settings.max_umap_objects}, ASTROPT_MAX_UMAP_OBJECTS); use method pca",
        )
    if method not in loaded.maps:
        try:
            loaded.maps[method] = embedding_map(loaded.catalogue.embeddings, method)  # type: ignore[arg-type]
        except MapUnavailable as exc:
            raise SpecInvalid("method", str(exc)) from exc
    return loaded.maps[method]


def map_png(
    settings: Settings,
    path: Path,
    job_id: str,
    color: str | None,
    method: str = "pca",
    scale: str | None = None,
) -> bytes:
    """The map PNG; colour ``scale`` linear, log or rank (default: rank for outlier_score, else linear)."""
    from astropt.science.figures import map_figure

    loaded = load(path)
    values = None
    if color == "outlier_score":
        values = outlier_scores(loaded, OUTLIER_K)
    elif color:
        columns = loaded.catalogue.columns
        column = columns.get(color)
        if column is None or column.ndim != 1 or column.dtype.kind not in "iufb":
            numeric = sorted(
                k for k, v in columns.items() if v.ndim == 1 and v.dtype.kind in "iufb"
            )
            raise SpecInvalid(
                "color",
                f"no numeric column {color!r}; the catalogue has outlier_score, "
                f"{', '.join(numeric)}",
            )
        values = column.astype(np.float64)
    xy = map_xy(settings, loaded, method)
    manifest = loaded.catalogue.manifest
    title = f"job {job_id[:8]}: {manifest.get('pooling')} pool, layer {manifest.get('layer')}, {method.upper()}"
    scale = scale or ("rank" if color == "outlier_score" else "linear")
    if color == "outlier_score":
        color = f"outlier_score ({outlier_method(loaded, None)})"
    return map_figure(xy, values, color, title, scale)


def _row_images(loaded: Loaded, object_ids: Sequence[str]) -> list[np.ndarray]:
    """The 96x96 crops of catalogue objects, read back from the catalogue's source
    (:class:`astropt.science.cutouts.RowImages`: mock, local files, a data set, or the cached
    codec tokens decoded)."""
    from astropt.science.cutouts import ImageUnavailable, RowImages

    if loaded.images is None:
        loaded.images = RowImages(loaded.catalogue.manifest)
    images = []
    for oid in object_ids:
        row = loaded.index.row_of(oid)
        if row is None:
            raise NotFound(f"object {oid!r} is not in the catalogue")
        try:
            images.append(loaded.images.image(int(row), oid).flux)
        except ImageUnavailable as exc:
            raise Conflict(
                f"the image of {oid!r} cannot be read back: {exc}; ask for JSON"
            ) from exc
    return images


def _four_bands(cube: Any) -> np.ndarray:
    from astropt.constants import DEFAULT_BANDS

    flux = np.zeros((len(DEFAULT_BANDS), *cube.flux.shape[1:]), dtype=np.float32)
    for i, band in enumerate(cube.bands):
        flux[DEFAULT_BANDS.index(band)] = cube.flux[i]
    return flux


def search_mosaic(path: Path, result: SearchOut, cube: Any = None) -> bytes:
    """PNG: the query (the object, or the upload) and its neighbours, with their scores."""
    from astropt.science.figures import MOSAIC_PANELS, mosaic_figure

    loaded = load(path)
    shown = [n for n in result.neighbours][: MOSAIC_PANELS - 1]
    query_ids = [] if cube is not None else [result.query["object_id"]]
    images = _row_images(loaded, query_ids + [n.object_id for n in shown])
    if cube is not None:
        images.insert(0, _four_bands(cube))
    titles = ["query"] + [f"#{n.rank} {n.score:.3f}" for n in shown]
    return mosaic_figure(
        images, titles, f"job {result.job_id[:8]}: {len(shown)} nearest of k={result.k}"
    )


def outliers_mosaic(path: Path, result: OutliersOut) -> bytes:
    from astropt.science.figures import MOSAIC_PANELS, mosaic_figure

    shown = result.items[:MOSAIC_PANELS]
    images = _row_images(load(path), [o.object_id for o in shown])
    titles = [f"#{o.rank} {o.outlier_score:.3f}" for o in shown]
    return mosaic_figure(images, titles, f"job {result.job_id[:8]}: most unusual (k={result.k})")
