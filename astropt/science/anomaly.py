"""Anomaly scores over a catalogue: larger means more unusual.

Methods (compared on planted anomalies by ``benchmarks/bench_anomaly.py``; the table and the
reasons for the default are in ``docs/science.md``):

- ``knn_cosine``: mean cosine distance to the ``k`` nearest other objects of the raw
  embeddings (the ranking before issue #26: raw embeddings nearly all point one way, so it
  mostly ranks faint galaxies);
- ``centred_cosine``: the same after subtracting the catalogue's mean embedding;
- ``mahalanobis``: squared distance from the mean in the whitened principal components that
  hold 99% of the variance (at most ``MAX_COMPONENTS``);
- ``knn_distance``: mean Euclidean distance to the ``k`` nearest others of the standardised
  embeddings;
- ``isolation_forest``: scikit-learn's isolation forest on the standardised embeddings (seeded);
- ``surprisal``: the model's mean next-token NLL of the galaxy's tokens (a catalogue column,
  :mod:`astropt.science.surprisal`); on its own it also ranks bright, structured normal galaxies
  high, since they have more to predict;
- ``surprisal_excess`` (the default): the surprisal minus the median surprisal of the galaxy's
  ``k`` nearest neighbours (standardised embeddings): how much more surprising it is than
  galaxies like it;
- ``surprisal_knn``: the larger of the ranks (each in (0, 1]) of ``surprisal_excess`` and
  ``knn_cosine``: unusual to the model's predictions *or* far from every other embedding (the
  default with the 2x64 model shipped before 2026-12-06, whose raw embeddings set pure noise
  apart; the 4x128 model's do not).

:data:`DEFAULT_METHOD` is the default of ``astropt search --outliers``,
``GET /catalogues/{id}/outliers`` and the map's ``color=outlier_score``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from astropt.science.neighbours import neighbour_index

METHODS = (
    "surprisal_excess",
    "surprisal_knn",
    "surprisal",
    "knn_cosine",
    "centred_cosine",
    "knn_distance",
    "mahalanobis",
    "isolation_forest",
)
DEFAULT_METHOD = "surprisal_excess"
FALLBACK_METHOD = (
    "knn_cosine"  # the default where a catalogue has no surprisal (patch or MAE models)
)
NEEDS_SURPRISAL = ("surprisal", "surprisal_excess", "surprisal_knn")
DEFAULT_K = 10
VARIANCE_KEPT = 0.99
MAX_COMPONENTS = 32


class AnomalyError(ValueError):
    """An unknown method, or one the catalogue cannot give (no surprisal column)."""


def _float(x: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def _standardised(embeddings: np.ndarray) -> np.ndarray:
    x = _float(embeddings)
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def _index(dim: int, n: int, metric: int) -> Any:
    """Exact up to ``EXACT_UP_TO`` objects, HNSW above (as ``SimilarityIndex``)."""
    return neighbour_index(dim, n, metric)


def _knn_mean(x: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Mean distance to the ``k`` nearest other rows (cosine: ``1 - cos`` of unit rows)."""
    import faiss

    k = min(k, len(x) - 1)
    if k < 1:
        return np.zeros(len(x))
    v = np.ascontiguousarray(x, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        v = np.ascontiguousarray(v / np.where(norms == 0, 1.0, norms), dtype=np.float32)
    index = _index(
        v.shape[1], len(v), faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    )
    index.add(v)
    found, _ = index.search(v, k + 1)
    found = found[:, 1:].astype(np.float64)  # column 0: the object itself
    return (
        (1.0 - found).mean(axis=1)
        if metric == "cosine"
        else np.sqrt(np.clip(found, 0, None)).mean(axis=1)
    )


def knn_cosine(embeddings: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    return _knn_mean(_float(embeddings), k, "cosine")


def centred_cosine(embeddings: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    x = _float(embeddings)
    return _knn_mean(x - x.mean(axis=0), k, "cosine")


def knn_distance(embeddings: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    return _knn_mean(_standardised(embeddings), k, "l2")


def mahalanobis(
    embeddings: np.ndarray, variance: float = VARIANCE_KEPT, max_components: int = MAX_COMPONENTS
) -> np.ndarray:
    """Squared Mahalanobis distance from the mean in the leading principal components
    (whitened: each divided by its standard deviation) that hold ``variance`` of the total."""
    x = _float(embeddings)
    x = x - x.mean(axis=0)
    if len(x) < 3:
        return np.zeros(len(x))
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    var = s**2 / (len(x) - 1)
    if var.sum() <= 0:
        return np.zeros(len(x))
    n = int(np.searchsorted(np.cumsum(var) / var.sum(), variance) + 1)
    n = max(1, min(n, max_components, int((var > var[0] * 1e-9).sum())))
    z = (x @ vt[:n].T) / np.sqrt(var[:n])
    return (z**2).sum(axis=1)


def isolation_forest(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.ensemble import IsolationForest

    x = _standardised(embeddings)
    forest = IsolationForest(n_estimators=200, random_state=seed).fit(x)
    return -forest.score_samples(x)


def surprisal_excess(
    embeddings: np.ndarray, surprisal: np.ndarray, k: int = DEFAULT_K
) -> np.ndarray:
    """Surprisal minus the median surprisal of the ``k`` nearest other objects (Euclidean,
    standardised embeddings)."""
    import faiss

    s = np.asarray(surprisal, dtype=np.float64)
    k = min(k, len(s) - 1)
    if k < 1:
        return np.zeros(len(s))
    z = np.ascontiguousarray(_standardised(embeddings), dtype=np.float32)
    index = _index(z.shape[1], len(z), faiss.METRIC_L2)
    index.add(z)
    _, rows = index.search(z, k + 1)
    return s - np.nanmedian(s[rows[:, 1:]], axis=1)


def ranks(scores: np.ndarray) -> np.ndarray:
    """Each score's rank in (0, 1] (1: the largest); NaN ranks lowest."""
    s = np.where(np.isfinite(scores), scores, -np.inf)
    order = np.argsort(s, kind="stable")
    out = np.empty(len(s))
    out[order] = np.arange(1, len(s) + 1) / max(len(s), 1)
    return out


def anomaly_scores(
    method: str,
    embeddings: np.ndarray,
    surprisal: np.ndarray | None = None,
    k: int = DEFAULT_K,
    knn: Callable[[], np.ndarray] | None = None,
) -> np.ndarray:
    """float64 ``[N]`` scores of ``method`` (larger: more unusual). ``knn``: where the caller
    has a search index, its ``knn_cosine`` scores (e.g. ``SimilarityIndex.outlier_scores``)."""
    cosine = knn or (lambda: knn_cosine(embeddings, k))
    if method in NEEDS_SURPRISAL and surprisal is None:
        raise AnomalyError(
            f"method {method!r} needs the catalogue's surprisal column, which only AION-token "
            f"autoregressive models write; use {FALLBACK_METHOD!r}"
        )

    def excess() -> np.ndarray:
        assert surprisal is not None  # NEEDS_SURPRISAL methods were refused above without it
        return surprisal_excess(embeddings, surprisal, k)

    makers: dict[str, Callable[[], np.ndarray]] = {
        "knn_cosine": cosine,
        "centred_cosine": lambda: centred_cosine(embeddings, k),
        "knn_distance": lambda: knn_distance(embeddings, k),
        "mahalanobis": lambda: mahalanobis(embeddings),
        "isolation_forest": lambda: isolation_forest(embeddings),
        "surprisal": lambda: np.asarray(surprisal, dtype=np.float64),
        "surprisal_excess": excess,
        "surprisal_knn": lambda: np.maximum(ranks(excess()), ranks(cosine())),
    }
    if method not in makers:
        raise AnomalyError(f"unknown anomaly method {method!r}; methods: {', '.join(METHODS)}")
    return makers[method]()


def default_method(has_surprisal: bool) -> str:
    return DEFAULT_METHOD if has_surprisal else FALLBACK_METHOD


def catalogue_anomaly_scores(
    catalogue: Any,
    method: str | None = None,
    k: int = DEFAULT_K,
    knn: Callable[[], np.ndarray] | None = None,
) -> tuple[str, np.ndarray]:
    """(method, scores) of a :class:`~astropt.science.catalogue.Catalogue`: ``method``, or the
    default for it (``surprisal_excess`` where it has a ``surprisal`` column, else
    ``knn_cosine``)."""
    surprisal = catalogue.columns.get("surprisal")
    method = method or default_method(surprisal is not None)
    return method, anomaly_scores(method, catalogue.embeddings, surprisal, k, knn)
