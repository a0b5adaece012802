"""Token data sets (#24): made by tokenise(), read by open_token_dataset(), trained from.

Real parts throughout: the shipped codec, the GalSim mock written to Parquet, DataLoader worker
processes, Arrow shards on disk.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from astropt.codec import CodecError, load_codec
from astropt.config import DataSettings, TrainConfig
from astropt.data.sources import open_rows
from astropt.stopping import StopRequested
from astropt.tokens import (
    TokenDatasetError,
    TokeniseConfig,
    estimate_bytes,
    finalize_manifest,
    open_token_dataset,
    tokenise,
)

N = 64


@pytest.fixture(scope="module")
def mock(tmp_path_factory) -> DataSettings:
    root = tmp_path_factory.mktemp("mock")
    return DataSettings(
        source="mock", n_mock=N, mock_seed=3, val_fraction=0.2, path=str(root / "mock")
    )


@pytest.fixture(scope="module")
def made(mock, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tokens") / "ds"
    result = tokenise(
        TokeniseConfig(
            data=mock,
            out_dir=str(out),
            shard_size=16,
            batch_size=8,
            num_workers=2,
            columns=["mag_r", "g_r"],
            job_id="job-7",
        ),
        progress=False,
    )
    assert result.complete and result.n_galaxies == N and result.n_shards == 4
    return out


def source_images(mock: DataSettings) -> tuple[list[str], np.ndarray]:
    rows, _ = open_rows(mock)
    return list(rows.keys()), np.stack([rows.sample(i)["flux"] for i in range(len(rows))])


def test_tokens_equal_codec_encode_of_the_same_images(mock, made) -> None:
    ids, flux = source_images(mock)
    expected = (
        load_codec("shipped").encode(flux).numpy()
    )  # the full 160x160 cut-outs, cropped by the codec
    ds = open_token_dataset(made)
    assert ds.object_ids() == ids
    assert np.array_equal(ds.take(np.arange(N)), expected)
    assert np.array_equal(ds.take([5, 3, 40, 3]), expected[[5, 3, 40, 3]])
    m = ds.manifest
    assert (
        m["codec"]["fingerprint"] == load_codec("shipped").info.fingerprint
        and m["job_id"] == "job-7"
    )
    assert (
        m["source"]["kind"] == "mock"
        and m["source"]["n"] == N
        and m["layout"]["tokens_per_image"] == 576
    )
    assert m["n_galaxies"] == N and [s["rows"] for s in m["shards"]] == [16] * 4
    assert all(len(s["sha256"]) == 64 for s in m["shards"])
    from astropt.science.sources import derived_columns, scalar_columns

    columns = scalar_columns([Path(f) for f in open_rows(mock)[0].files])
    columns.update(derived_columns(columns))
    assert np.allclose(ds.column("mag_r"), columns["mag_r"]) and np.allclose(
        ds.column("g_r"), columns["g_r"]
    )


def test_shards_are_memory_mapped_and_readable_with_pyarrow_alone(made) -> None:
    ds = open_token_dataset(made)
    mapped = ds.shard_tokens(1)
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.int16 and mapped.shape == (16, 576)
    assert np.array_equal(mapped, ds.take(np.arange(16, 32)))
    table = pa.ipc.open_file(
        pa.memory_map(str(made / ds.manifest["shards"][1]["file"]), "r")
    ).read_all()
    tokens = (
        table.column("tokens").chunk(0).flatten().to_numpy(zero_copy_only=True).reshape(-1, 576)
    )
    assert (
        np.array_equal(tokens, mapped)
        and table.column("object_id")[0].as_py() == ds.object_ids()[16]
    )


def test_estimate_bytes_covers_the_data_set(made) -> None:
    manifest = json.loads((made / "manifest.json").read_text())
    estimate = estimate_bytes(N, 2)
    assert manifest["bytes"] <= estimate <= manifest["bytes"] + 128 * 1024


def test_codec_mismatch_names_both_fingerprints(made, tmp_path) -> None:
    fingerprint = open_token_dataset(made).codec_fingerprint
    with pytest.raises(TokenDatasetError) as info:
        open_token_dataset(made, expect_codec_fingerprint="0123456789abcdef")
    assert fingerprint in str(info.value) and "0123456789abcdef" in str(info.value)
    config = tiny_train(
        tmp_path / "run",
        {"source": "tokens", "path": str(made), "val_fraction": 0.2},
        codec="random:0",
    )
    from astropt.training import train

    with pytest.raises(CodecError) as info:
        train(config)
    assert fingerprint in str(info.value) and load_codec("random:0").info.fingerprint in str(
        info.value
    )


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_shard_is_reported_by_name(made, tmp_path, damage) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(made, copy)
    shard = copy / json.loads((copy / "manifest.json").read_text())["shards"][2]["file"]
    data = bytearray(shard.read_bytes())
    if damage == "truncate":
        shard.write_bytes(data[: len(data) // 2])
    else:
        data[len(data) // 2] ^= 0xFF
        shard.write_bytes(bytes(data))
    with pytest.raises(TokenDatasetError, match=shard.name):
        open_token_dataset(copy)


def test_two_ranks_write_disjoint_shards_that_cover_the_source(mock, made, tmp_path) -> None:
    out = tmp_path / "ranks"
    results = [
        tokenise(
            TokeniseConfig(
                data=mock,
                out_dir=str(out),
                shard_size=16,
                batch_size=8,
                num_workers=0,
                rank=r,
                world_size=2,
            ),
            progress=False,
        )
        for r in (0, 1)
    ]
    assert [r.complete for r in results] == [
        False,
        True,
    ]  # the last rank to finish writes the manifest
    ds = open_token_dataset(out)
    by_rank = {r: [s["file"] for s in ds.manifest["shards"] if s["rank"] == r] for r in (0, 1)}
    assert by_rank[0] and by_rank[1] and not set(by_rank[0]) & set(by_rank[1])
    ids = ds.object_ids()
    reference = open_token_dataset(made)
    assert sorted(ids) == sorted(reference.object_ids()) and len(set(ids)) == N
    assert np.array_equal(
        ds.take(np.arange(N)), reference.take(np.arange(N))
    )  # blocks in rank order


def test_a_stopped_run_resumes_with_no_duplicate_and_no_missing_object_id(
    mock, made, tmp_path
) -> None:
    out = tmp_path / "resume"
    config = TokeniseConfig(data=mock, out_dir=str(out), shard_size=16, batch_size=8, num_workers=1)
    asked = []

    def stop() -> bool:  # after five codec batches: two shards written, half of the third encoded
        asked.append(1)
        return len(asked) > 5

    with pytest.raises(StopRequested):
        tokenise(config, stop=stop, progress=False)
    assert not (out / "manifest.json").exists()
    written = sorted((out / "shards").glob("*.arrow"))
    assert len(written) == 2
    before = {p.name: p.stat().st_mtime_ns for p in written}
    calls = []
    result = tokenise(
        config, progress=False, progress_callback=lambda done, total, rate: calls.append(done)
    )
    assert result.complete and result.n_galaxies == N
    assert calls[0] == 32 + 8 and calls[-1] == N  # it started after the two complete shards
    assert {p.name: p.stat().st_mtime_ns for p in written} == before
    ds = open_token_dataset(out)
    assert ds.object_ids() == open_token_dataset(made).object_ids()
    assert np.array_equal(ds.take(np.arange(N)), open_token_dataset(made).take(np.arange(N)))


def test_a_rerun_with_other_settings_is_refused(mock, made, tmp_path) -> None:
    out = tmp_path / "other"
    shutil.copytree(made, out)
    with pytest.raises(TokenDatasetError, match="shard_size"):
        tokenise(
            TokeniseConfig(data=mock, out_dir=str(out), shard_size=32, columns=["mag_r", "g_r"]),
            progress=False,
        )
    assert finalize_manifest(out)["n_galaxies"] == N  # untouched


def tiny_train(out: Path, data: dict, **overrides) -> TrainConfig:
    raw = {
        "out_dir": str(out),
        "codec": "shipped",
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 576},
        "data": data,
        "batch_size": 2,
        "max_iters": 6,
        "eval_interval": 3,
        "eval_iters": 2,
        "log_interval": 1,
        "n_val_images": 0,
        "optim": {"learning_rate": 3e-3, "warmup_iters": 2},
        "seed": 11,
        **overrides,
    }
    return TrainConfig.model_validate(raw)


def losses(run: Path) -> list[tuple[str, str, str]]:
    with (run / "loss.csv").open() as fh:
        return [(r["step"], r["train_loss"], r["val_loss"]) for r in csv.DictReader(fh)]


@pytest.mark.slow
def test_training_from_tokens_reproduces_training_from_images(
    mock, made, tmp_path, monkeypatch
) -> None:
    from astropt.training import loop, train

    monkeypatch.setenv("ASTROPT_DATA_DIR", str(tmp_path / "cache"))
    raw = train(tiny_train(tmp_path / "raw", mock.model_dump()))
    loaded = []
    real_load = loop.load_codec
    monkeypatch.setattr(loop, "load_codec", lambda *a, **k: loaded.append(a) or real_load(*a, **k))
    tokens = {"source": "tokens", "path": str(made), "val_fraction": 0.2}
    from_tokens = train(tiny_train(tmp_path / "tok", tokens, codec="default"))
    assert raw.status == from_tokens.status == "completed"
    assert (
        losses(tmp_path / "raw") == losses(tmp_path / "tok") and len(losses(tmp_path / "raw")) == 7
    )
    assert loaded == []  # no codec to train from tokens
    drawn = train(tiny_train(tmp_path / "img", tokens, n_val_images=2, max_iters=3))
    assert drawn.status == "completed" and len(loaded) == 1  # only to draw the validation images
    assert list((tmp_path / "img" / "val_images").glob("*.png"))
    from astropt.checkpoints.io import read_meta

    meta = read_meta(tmp_path / "tok" / "checkpoints" / "last")
    assert meta["codec"]["fingerprint"] == open_token_dataset(made).codec_fingerprint


def test_a_token_source_needs_a_path_and_an_aion_model(made, tmp_path) -> None:
    with pytest.raises(ValueError, match="data.path"):
        DataSettings(source="tokens")
    with pytest.raises(ValueError, match="aion"):
        tiny_train(
            tmp_path / "r",
            {"source": "tokens", "path": str(made)},
            model={
                "tokeniser": "patch",
                "n_layer": 1,
                "n_head": 2,
                "n_embd": 32,
                "block_size": 576,
            },
        )
    with pytest.raises(ValueError, match="out_dir"):
        tiny_train(made, {"source": "tokens", "path": str(made)})


@pytest.mark.slow
def test_a_write_through_stream_calls_the_codec_once_per_galaxy_then_never(
    tmp_path, monkeypatch
) -> None:
    import datasets

    from astropt.codec import CodecHandle
    from astropt.tokens.cache import stream_cache_dir
    from astropt.training import train
    from tests.astropt.seed_schema import IMAGE_COLUMN, write_seed_parquet

    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)
    monkeypatch.setenv("ASTROPT_DATA_DIR", str(tmp_path / "cache"))
    directory = tmp_path / "seed"
    write_seed_parquet(directory / "train-00000.parquet", 16)
    encoded: list[int] = []
    real_encode = CodecHandle.encode
    monkeypatch.setattr(
        CodecHandle,
        "encode",
        lambda self, flux, *a, **k: encoded.append(len(flux)) or real_encode(self, flux, *a, **k),
    )
    data = {
        "source": "hf",
        "hf_dataset": str(directory),
        "streaming": True,
        "image_column": IMAGE_COLUMN,
        "val_fraction": 0.25,
    }
    first = train(
        tiny_train(tmp_path / "a", data, max_iters=10, eval_interval=5)
    )  # 12 train galaxies: 2 epochs
    assert (
        first.status == "completed" and sum(encoded) == 16
    )  # each galaxy once, before the first step
    cached = open_token_dataset(
        stream_cache_dir(DataSettings(**data), load_codec("shipped").info.fingerprint)
    )
    assert sorted(cached.object_ids()) == [f"mock-s0-{i:08d}" for i in range(16)]
    encoded.clear()
    second = train(
        tiny_train(tmp_path / "b", data, max_iters=10, eval_interval=5)
    )  # another job, same source
    assert second.status == "completed" and encoded == []
    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_ddp_ranks_read_disjoint_rows_of_the_raw_images_split(mock, made) -> None:
    from astropt.data import open_split
    from astropt.tokens.splits import split_rows

    ds = open_token_dataset(made)
    ids = ds.object_ids()
    for split in ("train", "val"):
        parts = [split_rows(ds, split, 0.2, rank, 2) for rank in (0, 1)]
        assert not set(parts[0].rows) & set(parts[1].rows)
        for rank, part in enumerate(
            parts
        ):  # the very rows, in the order, raw images give that rank
            assert [ids[i] for i in part.rows] == open_split(
                mock, split, rank=rank, world_size=2
            ).object_ids
        assert np.array_equal(parts[1][[0, 1]], ds.take_long(parts[1].rows[:2]))


@pytest.mark.slow
def test_training_from_tokens_resumes_exactly(made, tmp_path) -> None:
    from astropt.training import train
    from tests.astropt.test_train import StopAt

    tokens = {"source": "tokens", "path": str(made), "val_fraction": 0.2}
    straight = train(tiny_train(tmp_path / "a", tokens))
    assert train(tiny_train(tmp_path / "b", tokens), [StopAt(2)]).step == 2
    resumed = train(tiny_train(tmp_path / "b", tokens))
    assert straight.step == resumed.step == 6
    assert losses(tmp_path / "a")[3:] == losses(tmp_path / "b")[-4:]  # steps 3-6 after the restart
