"""A catalogue's galaxies in the service layer: cut-outs, one object's page, galleries.

Cut-outs come from the catalogue's source (:class:`astropt.science.cutouts.RowImages`) and
are kept on disk in the catalogue directory (``cutouts/``), so a galaxy is read and drawn once.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import numpy as np

from service.catalogues.galaxy_schemas import (
    AnomalyRank,
    GalleryItem,
    GalleryOut,
    NeighbourOut,
    ObjectOut,
)
from service.catalogues.service import (
    Loaded,
    load,
    outlier_method,
    outlier_scores,
    row_columns,
    search_by_id,
)
from state.errors import Conflict, NotFound, SpecInvalid
from state.settings import Settings

GALLERY_MAX = 64  # tiles in one gallery PNG
OBJECT_NEIGHBOURS = 8


def _row(loaded: Loaded, job_id: str, object_id: str) -> int:
    row = loaded.index.row_of(object_id)
    if row is None:
        raise NotFound(f"object {object_id!r} is not in the catalogue of job {job_id}")
    return int(row)


def object_links(job_id: str, object_id: str) -> tuple[str, str]:
    page = f"/catalogues/{job_id}/objects/{quote(object_id, safe='')}"
    return f"{page}/cutout.png", page


def images_of(loaded: Loaded) -> object:
    from astropt.science.cutouts import RowImages

    if loaded.images is None:
        loaded.images = RowImages(loaded.catalogue.manifest)
    return loaded.images


def cutout(path: Path, job_id: str, object_id: str) -> tuple[bytes, str]:
    """``(png, origin)`` of one catalogue row, from the disk cache or drawn now (and cached)."""
    from astropt.science.cutouts import ImageUnavailable, cutout_png, read_cached, write_cached

    loaded = load(path)
    row = _row(loaded, job_id, object_id)
    cached = read_cached(path, object_id)
    if cached is not None:
        return cached
    try:
        image = images_of(loaded).image(row, object_id)  # type: ignore[attr-defined]
    except ImageUnavailable as exc:
        raise Conflict(f"the image of {object_id!r} cannot be read back: {exc}") from exc
    png = cutout_png(image)
    write_cached(path, object_id, png, image.origin)
    return png, image.origin


def _rank(scores: np.ndarray, row: int) -> AnomalyRank:
    above = int(
        (np.nan_to_num(scores, nan=-np.inf) > np.nan_to_num(scores[row], nan=-np.inf)).sum()
    )
    value = float(scores[row])
    return AnomalyRank(score=value if np.isfinite(value) else None, rank=above + 1, of=len(scores))


def object_page(
    settings: Settings, path: Path, job_id: str, object_id: str, k: int = OBJECT_NEIGHBOURS
) -> ObjectOut:
    loaded = load(path)
    row = _row(loaded, job_id, object_id)
    default = outlier_method(loaded, None)
    methods = [
        default,
        *(["surprisal"] if "surprisal" in loaded.catalogue.columns else []),
        "knn_cosine",
    ]
    anomaly = {m: _rank(outlier_scores(loaded, 10, m), row) for m in dict.fromkeys(methods)}
    hits = search_by_id(settings, path, job_id, object_id, k + 1).neighbours
    neighbours = [
        NeighbourOut(
            rank=n.rank,
            object_id=n.object_id,
            score=n.score,
            cutout=object_links(job_id, n.object_id)[0],
            page=object_links(job_id, n.object_id)[1],
        )
        for n in hits
        if n.object_id != object_id
    ][:k]
    source = (loaded.catalogue.manifest.get("data_source") or {}).get("kind", "unknown")
    return ObjectOut(
        job_id=job_id,
        object_id=object_id,
        row=row,
        columns=row_columns(loaded, row),
        anomaly=anomaly,
        default_method=default,
        neighbours=neighbours,
        cutout=object_links(job_id, object_id)[0],
        image_source=str(source),
    )


def _worst(loaded: Loaded, label: str, n: int) -> tuple[list[int], list[float], list[str]]:
    """Rows whose out-of-fold ridge prediction (the probe's folds) is furthest from the truth."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from astropt.science.catalogue import CatalogueError
    from astropt.science.probe import DEFAULT_ALPHA, DEFAULT_FOLDS

    try:
        y = loaded.catalogue.label(label)
    except CatalogueError as exc:
        raise SpecInvalid("label", str(exc)) from exc
    x = np.asarray(loaded.catalogue.embeddings, dtype=np.float64)
    keep = np.flatnonzero(np.isfinite(y) & np.isfinite(x).all(axis=1))
    if len(keep) < 2 * DEFAULT_FOLDS:
        raise SpecInvalid(
            "label",
            f"{label!r} has {len(keep)} finite values: too few for a {DEFAULT_FOLDS}-fold probe",
        )
    model = make_pipeline(StandardScaler(), Ridge(alpha=DEFAULT_ALPHA))
    pred = cross_val_predict(
        model, x[keep], y[keep], cv=KFold(DEFAULT_FOLDS, shuffle=True, random_state=0)
    )
    error = np.abs(pred - y[keep])
    order = np.argsort(-error, kind="stable")[:n]
    captions = [f"{y[keep][i]:.2f} -> {pred[i]:.2f}" for i in order]
    return [int(keep[i]) for i in order], [float(error[i]) for i in order], captions


def gallery(
    settings: Settings,
    path: Path,
    job_id: str,
    kind: str,
    n: int,
    method: str | None = None,
    object_id: str | None = None,
    label: str | None = None,
) -> GalleryOut:
    """The objects of a gallery: ``outliers`` (by ``method``), ``neighbours`` of ``object_id``,
    or the ``worst``-predicted by a ridge probe of ``label``."""
    if n > settings.max_outliers:
        raise SpecInvalid(
            "n",
            f"n ({n}) exceeds this service's limit of {settings.max_outliers} "
            "(setting ASTROPT_MAX_OUTLIERS)",
        )
    loaded = load(path)
    ids = loaded.index.object_ids
    if kind == "outliers":
        method = outlier_method(loaded, method)
        scores = outlier_scores(loaded, 10, method)
        rows = [int(i) for i in np.argsort(-scores, kind="stable")[:n]]
        values = [float(scores[i]) for i in rows]
        captions = [f"#{r + 1} {v:.3g}" for r, v in enumerate(values)]
        title = f"most unusual by {method}"
    elif kind == "neighbours":
        if not object_id:
            raise SpecInvalid("object_id", "a neighbours gallery needs the object_id of the query")
        hits = search_by_id(
            settings, path, job_id, object_id, min(n, settings.max_search_k)
        ).neighbours
        rows = [_row(loaded, job_id, h.object_id) for h in hits]
        values = [h.score for h in hits]
        captions = [
            "query" if h.object_id == object_id else f"#{h.rank} {h.score:.3f}" for h in hits
        ]
        title = f"nearest to {object_id}"
    elif kind == "worst":
        if not label:
            raise SpecInvalid("label", "a worst-predicted gallery needs a numeric column as label")
        rows, values, captions = _worst(loaded, label, n)
        title = f"worst-predicted {label} (truth -> out-of-fold ridge prediction)"
    else:
        raise SpecInvalid("kind", f"kind must be outliers, neighbours or worst, got {kind!r}")
    items = [
        GalleryItem(
            rank=r,
            object_id=str(ids[row]),
            score=v,
            caption=c,
            cutout=object_links(job_id, str(ids[row]))[0],
            page=object_links(job_id, str(ids[row]))[1],
        )
        for r, (row, v, c) in enumerate(zip(rows, values, captions, strict=True))
    ]
    return GalleryOut(job_id=job_id, kind=kind, title=title, items=items)  # type: ignore[arg-type]


def gallery_png(path: Path, result: GalleryOut) -> bytes:
    """The gallery's first :data:`GALLERY_MAX` galaxies as one PNG; one whose image cannot be
    read back is a grey tile."""
    from astropt.science.cutouts import ImageUnavailable
    from astropt.science.cutouts import gallery_png as draw

    loaded = load(path)
    images, captions = [], []
    for item in result.items[:GALLERY_MAX]:
        try:
            images.append(
                images_of(loaded).image(loaded.index.row_of(item.object_id), item.object_id)
            )  # type: ignore[attr-defined]
        except ImageUnavailable:
            images.append(None)
        captions.append(item.caption)
    return draw(images, captions, f"job {result.job_id[:8]}: {result.title}")
