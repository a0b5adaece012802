"""POST /catalogues/{id}/probe's service layer with a user's label table: containment in the
data roots, the join by object id, and errors that name the field (no stack needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from astropt.science import write_catalogue
from service.catalogues import service as catalogues
from service.catalogues.schemas import ProbeRequest
from state.errors import SpecInvalid
from state.settings import Settings


def random_catalogue(tmp_path: Path, rng: np.random.Generator, n: int, d: int) -> tuple:
    """(settings, catalogue directory, embeddings, ids) of ``n`` random ``d``-dim embeddings
    with a noise column ``mag``, inside the service's data directory."""
    x = rng.normal(size=(n, d))
    ids = [f"obj-{i:03d}" for i in range(n)]
    settings = Settings(data_dir=tmp_path / "data")
    catalogue = write_catalogue(
        tmp_path / "data" / "cat", ids, x, {"mag": rng.normal(size=n)}, {"model": "test"}
    )
    return settings, catalogue, x, ids


def test_a_label_table_inside_the_roots_is_joined_and_one_outside_is_refused(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(3)
    n, d = 400, 8
    settings, catalogue, x, ids = random_catalogue(tmp_path, rng, n, d)
    table = pa.table({"object_id": ids[::-1], "redshift": (x @ rng.normal(size=d))[::-1]})
    pq.write_table(table, tmp_path / "data" / "labels.parquet")

    body, _ = catalogues.probe(
        settings,
        Path(catalogue),
        ProbeRequest(
            labels=["redshift"], label_table=str(tmp_path / "data" / "labels.parquet"), folds=4
        ),
    )
    # a linear label (rows reversed in the table): ridge lambda 100 on 300 rows shrinks it a little
    assert body["features"][0]["scores"]["redshift"]["r2_mean"] > 0.9
    assert body["features"][0]["scores"]["redshift"]["n"] == n

    pq.write_table(table, tmp_path / "labels.parquet")  # outside data_dir
    with pytest.raises(SpecInvalid, match="outside the allowed data roots") as caught:
        catalogues.probe(
            settings,
            Path(catalogue),
            ProbeRequest(labels=["redshift"], label_table=str(tmp_path / "labels.parquet")),
        )
    assert caught.value.field == "label_table"
    with pytest.raises(SpecInvalid, match="does not exist") as caught:
        catalogues.probe(
            settings,
            Path(catalogue),
            ProbeRequest(labels=["redshift"], label_table=str(tmp_path / "data" / "nope.csv")),
        )
    assert caught.value.field == "label_table"
    with pytest.raises(
        SpecInvalid, match="redshift"
    ) as caught:  # without the table the label is unknown
        catalogues.probe(settings, Path(catalogue), ProbeRequest(labels=["redshift"]))
    assert caught.value.field == "labels"


def test_a_class_label_from_the_table_gets_a_logistic_probe_and_bad_ones_a_422(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(4)
    n = 300
    settings, catalogue, x, ids = random_catalogue(tmp_path, rng, n, 6)
    morphology = np.where(x[:, 0] + 0.1 * rng.normal(size=n) > 0, "disk", "spheroid")
    table = pa.table(
        {
            "object_id": ids,
            "morphology": morphology,
            "type_code": (x[:, 1] > 0).astype(np.int64),
            "few": ["rare" if i < 2 else "common" for i in range(n)],
        }
    )
    pq.write_table(table, tmp_path / "data" / "labels.parquet")
    labels = str(tmp_path / "data" / "labels.parquet")

    body, _ = catalogues.probe(
        settings,
        Path(catalogue),
        ProbeRequest(
            labels=["morphology", "type_code", "mag"],
            categorical=["type_code"],
            label_table=labels,
            folds=4,
        ),
    )
    scores = body["features"][0]["scores"]
    assert scores["morphology"]["metric"] == "accuracy" and scores["morphology"]["r2_mean"] > 0.9
    assert 0.4 < scores["morphology"]["chance"] < 0.6
    assert scores["type_code"]["metric"] == "accuracy" and scores["type_code"]["r2_mean"] > 0.9
    assert scores["mag"]["metric"] == "r2"
    assert body["features"][-1]["name"] == "shuffled_labels"
    assert abs(body["features"][-1]["scores"]["morphology"]["r2_mean"] - 0.5) < 0.1
    png = catalogues.probe_png(
        settings, Path(catalogue), ProbeRequest(labels=["morphology"], label_table=labels, folds=4)
    )
    assert png.startswith(b"\x89PNG")

    for request, field, message in [
        (
            ProbeRequest(labels=["mag"], categorical=["morphology"], label_table=labels),
            "categorical",
            "not among",
        ),
        (ProbeRequest(labels=["few"], label_table=labels), "labels", "class 'rare' has 2 objects"),
    ]:
        with pytest.raises(SpecInvalid, match=message) as caught:
            catalogues.probe(settings, Path(catalogue), request)
        assert caught.value.field == field
