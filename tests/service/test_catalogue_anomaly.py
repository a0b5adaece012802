"""The catalogue's outlier ranking in the service layer: the default method (surprisal_excess where
the catalogue has a surprisal column), the earlier one still selectable, and the map's colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from astropt.science import SimilarityIndex, write_catalogue
from service.catalogues import service as catalogues
from state.errors import SpecInvalid
from state.settings import Settings


def _data(with_surprisal: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(5)
    n = 300
    x = rng.normal(size=(n, 8)) + 4.0
    columns = {"g_r": np.where(np.arange(n) % 3 == 0, np.nan, rng.normal(size=n))}
    if with_surprisal:
        s = rng.normal(0.6, 0.05, size=n)
        s[42] = 5.0  # the model finds object 42 very surprising; its embedding is ordinary
        columns["surprisal"] = s
    return x, columns


def _catalogue(tmp_path: Path, with_surprisal: bool) -> tuple[Settings, Path]:
    x, columns = _data(with_surprisal)
    n = len(x)
    name = "cat-s" if with_surprisal else "cat"
    path = write_catalogue(
        tmp_path / "data" / name, [f"obj-{i:03d}" for i in range(n)], x, columns, {"model": "t"}
    )
    return Settings(data_dir=tmp_path / "data"), Path(path)


def test_outliers_default_to_surprisal_excess_and_the_old_ranking_stays_selectable(
    tmp_path: Path,
) -> None:
    settings, path = _catalogue(tmp_path, with_surprisal=True)
    result = catalogues.outliers(settings, path, "job", 5, 10)
    assert result.method == "surprisal_excess" and result.items[0].object_id == "obj-042"
    # its surprisal above the median of its 10 nearest others' (standardised embeddings), by brute force
    x, columns = _data(with_surprisal=True)
    z = (x - x.mean(0)) / x.std(0)
    nearest = np.argsort(((z - z[42]) ** 2).sum(1))[1:11]
    expected = columns["surprisal"][42] - np.median(columns["surprisal"][nearest])
    assert result.items[0].outlier_score == pytest.approx(expected, rel=1e-5)

    union = catalogues.outliers(settings, path, "job", 5, 10, "surprisal_knn")
    assert union.items[0].object_id == "obj-042" and union.items[0].outlier_score == 1.0

    old = catalogues.outliers(settings, path, "job", 5, 10, "knn_cosine")
    assert old.method == "knn_cosine"
    expected = SimilarityIndex.from_catalogue(path).outlier_scores(10)
    assert old.items[0].outlier_score == pytest.approx(float(expected.max()))

    plain_settings, plain = _catalogue(tmp_path, with_surprisal=False)
    assert catalogues.outliers(plain_settings, plain, "job", 5, 10).method == "knn_cosine"
    with pytest.raises(SpecInvalid, match="surprisal column") as caught:
        catalogues.outliers(plain_settings, plain, "job", 5, 10, "surprisal")
    assert caught.value.field == "method"


def test_the_map_draws_objects_without_a_value_and_ranks_outlier_scores(tmp_path: Path) -> None:
    settings, path = _catalogue(tmp_path, with_surprisal=True)
    for color, scale in (
        ("g_r", None),
        ("outlier_score", None),
        ("g_r", "log"),
        ("surprisal", "rank"),
    ):
        png = catalogues.map_png(settings, path, "job", color, "pca", scale)
        assert png.startswith(b"\x89PNG")
