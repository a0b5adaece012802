"""Which nearest-neighbour index a catalogue of ``n`` vectors gets: exact up to
``EXACT_UP_TO`` objects (N x N work), HNSW above. Similarity search and the anomaly scores
both build their indexes here."""

from __future__ import annotations

from typing import Any

EXACT_UP_TO = 20_000  # catalogues larger than this get an approximate (HNSW) index
HNSW_LINKS, HNSW_EF_SEARCH, HNSW_EF_CONSTRUCTION = 32, 128, 80


def neighbour_index(dim: int, n: int, metric: int, exact_up_to: int = EXACT_UP_TO) -> Any:
    """An empty FAISS index for ``n`` vectors of ``dim`` (``metric``: a ``faiss.METRIC_*``)."""
    import faiss

    if n <= exact_up_to:
        return faiss.IndexFlat(dim, metric)
    index = faiss.IndexHNSWFlat(dim, HNSW_LINKS, metric)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.hnsw.efSearch = HNSW_EF_SEARCH
    return index
