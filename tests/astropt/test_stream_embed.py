"""Embedding catalogues of a streamed Hugging Face data set (a local directory in the seed
schema, read through ``datasets`` with ``streaming=True``, as a hub data set would be).

Its rows must be those of the same files read as a local table source, in the same order, with
the named scalar columns; a stopped run continues after its complete shards without losing or
repeating a row; ``limit`` cuts the stream; bad requests fail with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from astropt.data.samples import DataSourceError
from astropt.science import read_catalogue
from astropt.science.embed import embed_catalogue
from astropt.science.embedding import EmbedOptions
from astropt.science.sources import SourceSpec
from tests.astropt.seed_schema import IMAGE_COLUMN, write_seed_parquet
from tests.astropt.test_science_embed import checkpoint, model  # noqa: F401 (fixtures)

N_FIRST, N_SECOND = 10, 7
COLUMNS = {
    "redshift": lambda p: round(0.01 * p["mag_r"], 4),
    "morphology": lambda p: "bulgy" if p["bulge_fraction"] > 0.5 else "disky",
}
OPTIONS = EmbedOptions(pool="mean", batch_size=4)


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("hub") / "data"
    write_seed_parquet(directory / "train-00000-of-00002.parquet", N_FIRST, columns=COLUMNS)
    write_seed_parquet(
        directory / "train-00001-of-00002.parquet", N_SECOND, start=N_FIRST, columns=COLUMNS
    )
    return directory


@pytest.fixture(autouse=True)
def _quick_thread_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)


def _write_cropped(path: Path, n: int, start: int, crop: int) -> None:
    """Seed-schema rows whose images are ``crop`` pixels smaller on every side."""
    from datasets import Dataset

    from astropt.data import IMAGE_SIZE
    from tests.astropt.seed_schema import seed_features, seed_row

    rows = [seed_row(start + i) for i in range(n)]
    for row in rows:
        image = row[IMAGE_COLUMN]
        for key in ("flux", "ivar", "mask"):
            image[key] = image[key][:, crop:-crop, crop:-crop]
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows, features=seed_features(IMAGE_SIZE - 2 * crop)).to_parquet(str(path))


def streamed(hub_dir: Path, **kwargs) -> SourceSpec:
    return SourceSpec(
        "hf", path=str(hub_dir), image_column=IMAGE_COLUMN, **({"limit": 100} | kwargs)
    )


def test_a_streamed_catalogue_equals_the_same_files_read_as_a_table(model, hub_dir, tmp_path):  # noqa: F811
    result = embed_catalogue(
        model,
        streamed(hub_dir, columns=("redshift", "morphology")),
        tmp_path / "stream",
        OPTIONS,
        shard_rows=5,
    )
    assert result.status == "completed" and result.count == N_FIRST + N_SECOND
    table = embed_catalogue(
        model,
        SourceSpec("local", path=str(hub_dir), image_column=IMAGE_COLUMN),
        tmp_path / "table",
        OPTIONS,
    )
    assert table.status == "completed" and table.manifest["data_source"]["kind"] == "local"
    a, b = read_catalogue(tmp_path / "stream"), read_catalogue(tmp_path / "table")
    assert list(a.object_ids) == list(b.object_ids) == [f"mock-s0-{i:08d}" for i in range(17)]
    np.testing.assert_allclose(a.embeddings, b.embeddings, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.columns["aperture_flux"], b.columns["aperture_flux"], rtol=1e-6)
    assert np.array_equal(a.columns["redshift"], b.columns["redshift"])
    assert a.is_categorical("morphology") and set(a.classes("morphology")) <= {"bulgy", "disky"}
    manifest = result.manifest
    assert manifest["data_source"]["kind"] == "hf" and manifest["data_source"]["streaming"] is True
    assert manifest["columns"] == ["morphology", "redshift"] and manifest["count"] == 17
    assert len(manifest["data_source"]["identity"]) == 2  # the two files, by size and time

    cut = embed_catalogue(
        model, streamed(hub_dir, limit=6, columns=()), tmp_path / "cut", OPTIONS, shard_rows=4
    )
    first_six = read_catalogue(tmp_path / "cut")
    assert cut.count == 6 and list(first_six.object_ids) == list(b.object_ids[:6])
    assert "redshift" not in first_six.columns
    np.testing.assert_allclose(first_six.embeddings, b.embeddings[:6], rtol=1e-5, atol=1e-6)


def test_a_stopped_stream_continues_after_its_complete_shards(model, hub_dir, tmp_path):  # noqa: F811
    polls = []

    def stop_after_three_batches() -> bool:
        polls.append(1)
        return len(polls) > 3

    source = streamed(hub_dir)
    stopped = embed_catalogue(
        model, source, tmp_path / "cat", OPTIONS, should_stop=stop_after_three_batches, shard_rows=4
    )
    assert stopped.status == "cancelled" and stopped.count == 12 and stopped.shards_kept == 3
    assert not (tmp_path / "cat").exists()
    resumed = embed_catalogue(model, source, tmp_path / "cat", OPTIONS, shard_rows=4)
    assert resumed.status == "completed" and resumed.resumed_from == 12 and resumed.count == 17
    whole = embed_catalogue(model, source, tmp_path / "whole", OPTIONS, shard_rows=4)
    assert whole.resumed_from == 0 and whole.count == 17
    a, b = read_catalogue(tmp_path / "cat"), read_catalogue(tmp_path / "whole")
    assert (
        list(a.object_ids) == list(b.object_ids) and len(set(a.object_ids)) == 17
    )  # none lost, none twice
    np.testing.assert_allclose(a.embeddings, b.embeddings, rtol=1e-5, atol=1e-6)


def test_bad_streamed_sources_fail_with_the_reason(model, hub_dir, tmp_path, monkeypatch):  # noqa: F811
    with pytest.raises(ValueError, match="needs a limit"):
        embed_catalogue(model, streamed(hub_dir, limit=None), tmp_path / "a", OPTIONS)
    with pytest.raises(DataSourceError, match=r"\['colour'\] are not scalar columns .*redshift"):
        embed_catalogue(model, streamed(hub_dir, columns=("colour",)), tmp_path / "b", OPTIONS)
    with pytest.raises(DataSourceError, match="no image column 'pixels'"):
        embed_catalogue(
            model,
            SourceSpec("hf", path=str(hub_dir), image_column="pixels", limit=5),
            tmp_path / "c",
            OPTIONS,
        )
    mixed = tmp_path / "mixed"
    write_seed_parquet(mixed / "train-00000-of-00002.parquet", 3)
    _write_cropped(mixed / "train-00001-of-00002.parquet", 3, start=3, crop=16)
    with pytest.raises(DataSourceError, match="images of different sizes"):
        embed_catalogue(model, streamed(mixed), tmp_path / "e", OPTIONS)
    assert not (tmp_path / "e").exists()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        DataSourceError, match="someone/not-here"
    ):  # offline: a clear error, never a hang
        embed_catalogue(
            model, SourceSpec("hf", path="someone/not-here", limit=5), tmp_path / "d", OPTIONS
        )


def test_the_cli_embeds_a_streamed_data_set(checkpoint, hub_dir, tmp_path, capsys):  # noqa: F811
    from astropt.cli import main

    out = tmp_path / "cli"
    assert (
        main(
            [
                "embed",
                "--model",
                str(checkpoint),
                "--data",
                "hf",
                "--data-path",
                str(hub_dir),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        != 0
    )  # no --n: a stream needs its most rows
    assert "needs --data-path" in capsys.readouterr().err
    code = main(
        [
            "embed",
            "--model",
            str(checkpoint),
            "--data",
            "hf",
            "--data-path",
            str(hub_dir),
            "--n",
            "5",
            "--columns",
            "redshift",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0 and "5 embeddings" in capsys.readouterr().out
    cat = read_catalogue(out)
    assert len(cat) == 5 and "redshift" in cat.columns and "morphology" not in cat.columns
