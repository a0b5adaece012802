"""Cosine similarity search (FAISS) against a brute-force ranking; outliers; the 2-D map."""

from __future__ import annotations

import json

import numpy as np
import pytest

from astropt.cli import main
from astropt.science import SimilarityIndex, catalogue_map, pca_map, write_catalogue


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    rng = np.random.default_rng(0)
    n, d = 300, 24
    centre = rng.normal(size=d) * 3
    x = centre + rng.normal(size=(n, d))
    x[123] = -centre  # one object unlike all the others
    ids = [f"gal-{i:03d}" for i in range(n)]
    path = tmp_path_factory.mktemp("search") / "cat"
    write_catalogue(path, ids, x, {"mag_r": rng.uniform(17, 22, n)})
    return path, ids, x.astype(np.float32)


def brute_force(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    scores = xn @ (q / np.linalg.norm(q))
    order = np.argsort(-scores, kind="stable")[:k]
    return order, scores[order]


def test_query_by_id_returns_itself_first_and_matches_brute_force(catalogue):
    path, ids, x = catalogue
    index = SimilarityIndex.from_catalogue(path)
    for row in (0, 57, 299):
        hits = index.query_id(ids[row], k=10)
        assert hits[0].object_id == ids[row] and hits[0].score == pytest.approx(1.0, abs=1e-5)
        order, scores = brute_force(x, x[row], 10)
        assert [h.object_id for h in hits] == [ids[i] for i in order]
        np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-5)
        assert [h.rank for h in hits] == list(range(10))


def test_query_by_vector_is_scale_invariant(catalogue):
    path, ids, x = catalogue
    index = SimilarityIndex.from_catalogue(path)
    q = np.random.default_rng(5).normal(size=x.shape[1]).astype(np.float32)
    a, b = index.query_vector(q, 5), index.query_vector(7.5 * q, 5)
    assert [h.object_id for h in a] == [h.object_id for h in b]
    order, scores = brute_force(x, q, 5)
    assert [h.object_id for h in a] == [ids[i] for i in order]
    with pytest.raises(ValueError, match="dimensions"):
        index.query_vector(q[:3])
    with pytest.raises(KeyError):
        index.query_id("gal-999")
    assert len(index.query_id(ids[0], k=1000)) == len(ids)


def test_the_planted_outlier_scores_highest(catalogue):
    path, ids, _ = catalogue
    scores = SimilarityIndex.from_catalogue(path).outlier_scores(k=10)
    assert scores.shape == (len(ids),) and int(np.argmax(scores)) == 123
    assert scores[123] > 1.5 > np.delete(scores, 123).max()


def test_map_has_two_ordered_components(catalogue):
    path, ids, x = catalogue
    xy = pca_map(x)
    assert xy.shape == (len(ids), 2) and xy[:, 0].var() >= xy[:, 1].var()
    points = catalogue_map(path, k=5)
    assert [p["object_id"] for p in points] == ids
    assert max(points, key=lambda p: p["outlier_score"])["object_id"] == "gal-123"


def test_cli_search(catalogue, capsys):
    path, ids, x = catalogue
    assert main(["search", str(path), "--object-id", ids[4], "-k", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    order, _ = brute_force(x, x[4], 3)
    assert [r["object_id"] for r in rows] == [ids[i] for i in order] and rows[0][
        "score"
    ] == pytest.approx(1.0)
    assert main(["search", str(path), "--outliers", "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["object_id"] == "gal-123"


def test_a_large_catalogue_gets_an_approximate_index_that_finds_the_true_neighbours() -> None:
    rng = np.random.default_rng(1)
    n, d, k = 4000, 32, 10
    centres = rng.normal(size=(40, d)) * 2  # clustered, as galaxy embeddings are
    x = (centres[rng.integers(0, 40, n)] + rng.normal(size=(n, d))).astype(np.float32)
    ids = [f"gal-{i:04d}" for i in range(n)]
    exact = SimilarityIndex(ids, x)
    approximate = SimilarityIndex(ids, x, exact_up_to=1000)  # a threshold below n: HNSW
    assert (exact.kind, approximate.kind) == ("exact", "hnsw")
    recalls = []
    for row in rng.choice(n, 50, replace=False):
        truth, scores = brute_force(x, x[row], k)
        hits = approximate.query_id(ids[row], k)
        assert hits[0].object_id == ids[row] and hits[0].score == pytest.approx(1.0, abs=1e-5)
        found = {h.object_id for h in hits}
        recalls.append(len(found & {ids[i] for i in truth}) / k)
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        for h in hits:  # the scores it reports are the true cosines of what it found
            assert h.score == pytest.approx(
                float(unit[approximate.row_of(h.object_id)] @ unit[row]), abs=1e-5
            )
    print(f"HNSW recall@{k}: {np.mean(recalls):.3f}")
    assert np.mean(recalls) >= 0.95, np.mean(recalls)


def _two_clusters() -> np.ndarray:
    rng = np.random.default_rng(2)
    return np.concatenate([rng.normal(size=(60, 8)) + 6, rng.normal(size=(60, 8)) - 6]).astype(
        np.float32
    )


def test_a_map_without_umap_learn_says_how_to_get_it(monkeypatch) -> None:
    import sys

    from astropt.science.search import MapUnavailable, embedding_map

    x = _two_clusters()
    pca = embedding_map(x, "pca")
    assert (
        pca.shape == (120, 2) and abs(pca[:60, 0].mean() - pca[60:, 0].mean()) > 5
    )  # the 2 clusters apart
    with pytest.raises(ValueError, match="'pca' or 'umap'"):
        embedding_map(x, "tsne")  # type: ignore[arg-type]
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "umap", None)  # as if umap-learn were not installed
        with pytest.raises(MapUnavailable, match="umap-learn"):
            embedding_map(x, "umap")


def test_umap_maps_where_umap_learn_is_installed() -> None:
    pytest.importorskip("umap")  # the optional extra [umap]
    from astropt.science.search import embedding_map

    x = _two_clusters()
    xy = embedding_map(x, "umap", seed=0)
    assert xy.shape == (120, 2) and np.isfinite(xy).all()
    assert np.array_equal(xy, embedding_map(x, "umap", seed=0))  # seeded
