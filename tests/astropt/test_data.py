"""Data sources through the one entry point ``open_split``: mock, Parquet, FITS, npy, hub."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from astropt.config import DataSettings
from astropt.data import DataSourceError, FiniteSplit, open_split, split_of
from astropt.data.commands import register
from astropt.data.mock import simulate_galaxy, write_mock_dataset
from astropt.data.samples import select_bands
from astropt.data.sources import _stream_split

N_MOCK = 24


@pytest.fixture(scope="module")
def mock_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "mock"
    return write_mock_dataset(out, N_MOCK, seed=0, shard_size=8, progress=False)


def mock_cfg(path: Path, **extra) -> DataSettings:
    return DataSettings(source="mock", path=str(path), n_mock=N_MOCK, val_fraction=0.25, **extra)


def ids(split) -> list[str]:
    return [sample["object_id"] for sample in split]


def test_mock_round_trip_through_open_split(mock_dir) -> None:
    train = open_split(mock_cfg(mock_dir), "train")
    val = open_split(mock_cfg(mock_dir), "val")
    assert isinstance(train, FiniteSplit) and len(train) + len(val) == N_MOCK
    sample = train[0]
    index = int(sample["object_id"].rsplit("-", 1)[1])
    galaxy = simulate_galaxy(0, index)
    np.testing.assert_array_equal(sample["flux"], galaxy["flux"])
    np.testing.assert_array_equal(sample["truth"], galaxy["truth"])
    np.testing.assert_array_equal(sample["noise_sigma"], galaxy["noise_sigma"])
    assert sample["flux"].dtype == np.float32 and sample["flux"].shape == (4, 160, 160)
    assert sample["bands"] == ["DES-G", "DES-R", "DES-I", "DES-Z"]


def test_train_and_val_never_share_a_galaxy(mock_dir) -> None:
    train_ids = set(ids(open_split(mock_cfg(mock_dir), "train")))
    val_ids = set(ids(open_split(mock_cfg(mock_dir), "val")))
    assert train_ids.isdisjoint(val_ids)
    assert len(train_ids | val_ids) == N_MOCK and len(val_ids) > 0


def test_val_fraction_is_respected_over_many_keys() -> None:
    keys = [f"obj-{i}" for i in range(20_000)]
    fraction = sum(split_of(k, 0.1) == "val" for k in keys) / len(keys)
    assert fraction == pytest.approx(0.1, abs=0.01)
    assert split_of("obj-7", 0.1) == split_of("obj-7", 0.1)


def test_ddp_ranks_are_disjoint_and_cover_the_split(mock_dir) -> None:
    cfg = mock_cfg(mock_dir)
    full = ids(open_split(cfg, "train"))
    per_rank = [ids(open_split(cfg, "train", rank=r, world_size=3)) for r in range(3)]
    for a in range(3):
        for b in range(a + 1, 3):
            assert set(per_rank[a]).isdisjoint(per_rank[b])
    assert sorted(sum(per_rank, [])) == sorted(full)
    with pytest.raises(ValueError, match="rank"):
        open_split(cfg, "train", rank=3, world_size=3)


def test_fingerprint_depends_on_split_and_rank_and_is_stable_across_processes(mock_dir) -> None:
    cfg = mock_cfg(mock_dir)
    train = open_split(cfg, "train")
    assert train.fingerprint == open_split(cfg, "train").fingerprint
    assert train.fingerprint != open_split(cfg, "val").fingerprint
    assert train.fingerprint != open_split(cfg, "train", rank=1, world_size=2).fingerprint
    code = (
        "from astropt.config import DataSettings; from astropt.data import open_split; "
        f"cfg = DataSettings(source='mock', path={str(mock_dir)!r}, n_mock={N_MOCK}, "
        "val_fraction=0.25); print(open_split(cfg, 'train').fingerprint)"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == train.fingerprint


def test_local_parquet_reads_the_same_galaxies_as_mock(mock_dir) -> None:
    local = DataSettings(source="local", path=str(mock_dir), val_fraction=0.25)
    assert ids(open_split(local, "val")) == ids(open_split(mock_cfg(mock_dir), "val"))


def test_local_parquet_with_the_hub_column_name_is_renamed(mock_dir, tmp_path) -> None:
    import datasets

    dataset = datasets.load_dataset(
        "parquet", data_files=str(mock_dir / "shard-00000.parquet"), split="train"
    )
    dataset = dataset.rename_column("image", "legacysurvey_image").remove_columns("truth")
    dataset.to_parquet(str(tmp_path / "hub_like.parquet"))
    cfg = DataSettings(
        source="local", path=str(tmp_path), image_column="legacysurvey_image", val_fraction=0.4
    )
    samples = list(open_split(cfg, "train")) + list(open_split(cfg, "val"))
    assert len(samples) == 8 and "truth" not in samples[0]
    first = next(s for s in samples if s["object_id"] == "mock-s0-00000000")
    np.testing.assert_array_equal(first["flux"], simulate_galaxy(0, 0)["flux"])


def write_cubes(directory: Path, n: int, fmt: str) -> list[np.ndarray]:
    from astropy.io import fits

    directory.mkdir(parents=True, exist_ok=True)
    cubes = [simulate_galaxy(9, i, size=100)["flux"] for i in range(n)]
    for i, cube in enumerate(cubes):
        if fmt == "npy":
            np.save(directory / f"gal{i:02d}.npy", cube)
        elif i % 2:  # data in the first image extension, big-endian as FITS stores it
            hdus = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(cube.astype(">f4"))])
            hdus.writeto(directory / f"gal{i:02d}.fits")
        else:
            fits.PrimaryHDU(cube.astype(">f4")).writeto(directory / f"gal{i:02d}.fits")
    return cubes


@pytest.mark.parametrize("fmt", ["fits", "npy"])
def test_directory_of_cubes(tmp_path, fmt) -> None:
    cubes = write_cubes(tmp_path / fmt, 8, fmt)
    cfg = DataSettings(source="local", path=str(tmp_path / fmt), val_fraction=0.3)
    train, val = open_split(cfg, "train"), open_split(cfg, "val")
    assert len(train) + len(val) == 8
    for sample in [*train, *val]:
        index = int(sample["object_id"][3:5])
        assert sample["object_id"] == f"gal{index:02d}.{fmt}"
        assert sample["flux"].dtype == np.dtype("float32")  # native order, not '>f4'
        assert sample["flux"].dtype.isnative
        np.testing.assert_array_equal(sample["flux"], cubes[index])


def test_wrong_cube_shape_fails_naming_the_file(tmp_path) -> None:
    write_cubes(tmp_path, 2, "npy")
    np.save(tmp_path / "bad.npy", np.zeros((3, 120, 120), dtype=np.float32))
    with pytest.raises(DataSourceError, match=r"bad\.npy.*\[3, 120, 120\]"):
        open_split(DataSettings(source="local", path=str(tmp_path)), "train")


def test_too_small_image_fails(tmp_path) -> None:
    np.save(tmp_path / "tiny.npy", np.zeros((4, 64, 64), dtype=np.float32))
    with pytest.raises(DataSourceError, match=r"tiny\.npy.*64x64"):
        open_split(DataSettings(source="local", path=str(tmp_path)), "train")


def test_parquet_without_image_column_fails_naming_the_file(tmp_path) -> None:
    import datasets

    datasets.Dataset.from_dict({"object_id": ["a"], "pixels": [[1.0, 2.0]]}).to_parquet(
        str(tmp_path / "other.parquet")
    )
    with pytest.raises(DataSourceError, match=r"other\.parquet: no image column"):
        open_split(DataSettings(source="local", path=str(tmp_path)), "train")


def test_parquet_image_without_flux_fails(tmp_path) -> None:
    import datasets

    rows = {"image": [{"band": ["DES-G"], "ivar": [1.0]}]}
    datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "noflux.parquet"))
    with pytest.raises(DataSourceError, match=r"noflux\.parquet: column 'image' has no 'flux'"):
        open_split(DataSettings(source="local", path=str(tmp_path)), "train")


def test_missing_path_is_a_clear_error(tmp_path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ValidationError, match="does not exist"):
        DataSettings(source="local", path=str(missing))
    cfg = DataSettings.model_construct(source="local", path=str(missing))
    with pytest.raises(DataSourceError, match="does not exist"):
        open_split(cfg, "train")


def test_empty_directory_says_what_files_are_expected(tmp_path) -> None:
    with pytest.raises(DataSourceError, match="no data files.*FITS"):
        open_split(DataSettings(source="local", path=str(tmp_path)), "train")


@pytest.mark.timeout(60)
def test_hub_offline_fails_fast_naming_alternatives() -> None:
    cfg = DataSettings(source="hf", hf_dataset="Smith42/legacysurvey_hsc_crossmatched")
    with pytest.raises(DataSourceError, match="source=mock.*source=local"):
        open_split(cfg, "train")


def test_stream_split_filters_shards_and_shuffles(mock_dir, monkeypatch) -> None:
    import datasets

    # datasets pauses 5 s after iterating shuffled local Parquet (an Arrow thread-shutdown
    # workaround); it does not change what is yielded.
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)

    files = sorted(str(p) for p in mock_dir.glob("*.parquet"))
    cfg = mock_cfg(mock_dir, shuffle_buffer=4)
    finite_val = set(ids(open_split(cfg, "val")))
    finite_train = set(ids(open_split(cfg, "train")))

    stream = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)

    def stream_ids(split: str, rank: int, world_size: int) -> list[str]:
        return ids(_stream_split(stream, cfg, split, rank, world_size, seed=1))

    assert set(stream_ids("val", 0, 1)) == finite_val
    per_rank = [stream_ids("train", r, 3) for r in range(3)]
    assert sorted(sum(per_rank, [])) == sorted(finite_train)
    assert all(set(per_rank[0]).isdisjoint(other) for other in per_rank[1:])
    assert stream_ids("train", 0, 1) == stream_ids("train", 0, 1)  # seeded shuffle


def test_bands_are_selected_and_reordered_by_name() -> None:
    cube = np.arange(5 * 2 * 2, dtype=np.float32).reshape(5, 2, 2)
    names = ["DES-Z", "DES-G", "DES-R", "DES-I", "HSC-Y"]
    out = select_bands(cube, names, ["des-g", "des-r", "des-i", "des-z"], "x")
    np.testing.assert_array_equal(out[:, 0, 0], [4.0, 8.0, 12.0, 0.0])
    with pytest.raises(DataSourceError, match="missing"):
        select_bands(cube[:4], names[:4], ["DES-G", "DES-R", "DES-I", "HSC-Y"], "x")


def test_cli_data_synth(tmp_path, capsys) -> None:
    parser = argparse.ArgumentParser(prog="astropt")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["data", "synth", "--n", "3", "--out", str(tmp_path / "s"), "--seed", "4", "--no-progress"]
    )
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 3 and summary["seed"] == 4
    assert (tmp_path / "s" / "manifest.json").is_file()


@pytest.mark.parametrize("streaming", [False, True])
def test_hf_source_reads_a_dataset_directory_like_the_hub(mock_dir, monkeypatch, streaming) -> None:
    import datasets

    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)
    cfg = DataSettings(
        source="hf", hf_dataset=str(mock_dir), streaming=streaming, val_fraction=0.25
    )
    val = open_split(cfg, "val")
    assert isinstance(val, FiniteSplit) != streaming
    assert sorted(ids(val)) == sorted(ids(open_split(mock_cfg(mock_dir), "val")))


def test_hub_probe_fails_with_an_actionable_message() -> None:
    from astropt.data.sources import _probe_hub

    # Unreachable hub (here) or a missing dataset (with network): both are clear errors.
    with pytest.raises(DataSourceError, match="cannot reach|not found"):
        _probe_hub("astropt-tests/no-such-dataset-4f1c")


def test_mock_cache_location(tmp_path, monkeypatch) -> None:
    from astropt.data import mock_dir as default_mock_dir

    monkeypatch.setenv("ASTROPT_DATA_DIR", str(tmp_path))
    cfg = DataSettings(source="mock", n_mock=16, mock_seed=3)
    assert default_mock_dir(cfg) == (tmp_path / "mock" / "n16_seed3").resolve()
    monkeypatch.delenv("ASTROPT_DATA_DIR")
    assert default_mock_dir(cfg) == Path.home() / ".cache/astropt/mock/n16_seed3"


def test_mock_into_a_foreign_directory_is_a_data_error(tmp_path) -> None:
    (tmp_path / "thesis.tex").write_text("mine")
    cfg = DataSettings(source="mock", path=str(tmp_path), n_mock=8)
    with pytest.raises(DataSourceError, match="not a mock data set"):
        open_split(cfg, "train")
    assert (tmp_path / "thesis.tex").read_text() == "mine"
