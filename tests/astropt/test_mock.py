"""The GalSim mock: determinism, physical units, noise, and the on-disk data set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from astropt.data.mock import (
    BANDS,
    GENERATOR_VERSION,
    NOISE_SIGMA,
    nanomaggies_to_mag,
    simulate,
    simulate_galaxy,
    write_mock_dataset,
)


def test_same_seed_and_index_give_the_same_galaxy_regardless_of_batch() -> None:
    alone = simulate_galaxy(3, 5)
    in_batch = list(simulate(4, seed=3, start=3))[2]
    assert in_batch["object_id"] == alone["object_id"] == "mock-s3-00000005"
    np.testing.assert_array_equal(in_batch["flux"], alone["flux"])
    np.testing.assert_array_equal(in_batch["truth"], alone["truth"])
    assert in_batch["params"] == alone["params"]


def test_different_seed_or_index_gives_a_different_galaxy() -> None:
    base = simulate_galaxy(0, 0)
    assert simulate_galaxy(1, 0)["params"]["mag_r"] != base["params"]["mag_r"]
    assert simulate_galaxy(0, 1)["params"]["mag_r"] != base["params"]["mag_r"]


def test_record_layout() -> None:
    galaxy = simulate_galaxy(0, 7)
    assert galaxy["bands"] == list(BANDS) == ["DES-G", "DES-R", "DES-I", "DES-Z"]
    for key in ("flux", "truth"):
        assert galaxy[key].shape == (4, 160, 160) and galaxy[key].dtype == np.float32
    assert galaxy["noise_sigma"].shape == (4,) and galaxy["noise_sigma"].dtype == np.float32
    assert all(isinstance(v, float) for v in galaxy["params"].values())
    assert simulate_galaxy(0, 7, size=96)["flux"].shape == (4, 96, 96)


def test_total_flux_is_in_nanomaggies_and_matches_the_magnitude() -> None:
    for index in range(6):
        galaxy = simulate_galaxy(0, index)
        params = galaxy["params"]
        assert 17.0 <= params["mag_r"] <= 22.0
        # 160 px = 42": the stamp holds all but a sliver of the light.
        measured_mag = nanomaggies_to_mag(galaxy["truth"][1].sum(dtype=np.float64))
        assert abs(measured_mag - params["mag_r"]) < 0.05
        for band, name in enumerate("griz"):
            assert galaxy["truth"][band].sum() == pytest.approx(params[f"flux_{name}"], rel=0.05)


def test_bulges_are_redder_than_disks_on_average() -> None:
    params = [simulate_galaxy(1, i)["params"] for i in range(20)]
    bulge_g_r = np.mean([p["bulge_g_r"] for p in params])
    disk_g_r = np.mean([p["disk_g_r"] for p in params])
    assert bulge_g_r > disk_g_r + 0.2


def test_noise_in_an_empty_corner_matches_noise_sigma() -> None:
    galaxy = simulate_galaxy(0, 2)
    corner = (galaxy["flux"] - galaxy["truth"])[:, :40, :40]
    measured = corner.std(axis=(1, 2))
    np.testing.assert_allclose(measured, galaxy["noise_sigma"], rtol=0.1)
    assert np.all(galaxy["noise_sigma"] >= 0.8 * NOISE_SIGMA - 1e-6)
    # the sky far from the galaxy is empty in the truth image
    assert np.abs(galaxy["truth"][:, :10, :10]).max() < 0.1 * galaxy["noise_sigma"].min()


def test_truth_is_smooth_and_peaks_near_the_centre() -> None:
    galaxy = simulate_galaxy(0, 4)
    truth = galaxy["truth"][1]
    assert truth.min() > -1e-4  # noise-free (GalSim FFT ringing is tiny)
    peak = np.unravel_index(np.argmax(truth), truth.shape)
    assert abs(peak[0] - 80) <= 4 and abs(peak[1] - 80) <= 4
    # neighbouring-pixel differences of the truth are far smaller than of the noisy image
    rough = np.abs(np.diff(galaxy["flux"][1], axis=1)).mean()
    smooth = np.abs(np.diff(truth, axis=1)).mean()
    assert smooth < 0.2 * rough


def test_write_mock_dataset_writes_shards_and_manifest_then_reuses(tmp_path) -> None:
    out = write_mock_dataset(tmp_path / "mock", 10, seed=2, shard_size=4, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n"] == 10 and manifest["seed"] == 2
    assert manifest["generator_version"] == GENERATOR_VERSION
    assert manifest["files"] == [f"shard-0000{i}.parquet" for i in range(3)]
    assert manifest["bytes_per_galaxy"] > 0 and manifest["seconds_per_galaxy"] > 0
    mtime = (out / "shard-00000.parquet").stat().st_mtime_ns
    assert write_mock_dataset(tmp_path / "mock", 10, seed=2, progress=False) == out
    assert (out / "shard-00000.parquet").stat().st_mtime_ns == mtime  # reused, not rewritten
    # no temporary directories are left next to it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mock"]


def test_write_mock_dataset_refuses_a_foreign_directory(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a mock data set"):
        write_mock_dataset(tmp_path, 8, progress=False)


def test_mock_parquet_layout_is_the_image_struct_the_readers_expect(tmp_path) -> None:
    # The mock's own layout (upper-case bands, no ivar/mask); the seed data set's real
    # schema is exercised with tests/astropt/seed_schema.py in test_seed_schema.py.
    import datasets

    out = write_mock_dataset(tmp_path / "m", 3, seed=0, progress=False)
    dataset = datasets.load_dataset(
        "parquet", data_files=str(out / "shard-00000.parquet"), split="train"
    ).with_format("numpy")
    image = dataset.features["image"]
    assert set(image) == {"band", "flux", "psf_fwhm", "scale"}
    assert image["flux"].shape == (4, 160, 160)
    row = dataset[1]
    np.testing.assert_array_equal(row["image"]["flux"], simulate_galaxy(0, 1)["flux"])
    np.testing.assert_array_equal(row["truth"], simulate_galaxy(0, 1)["truth"])
    assert list(row["image"]["band"]) == list(BANDS)
    assert row["image"]["scale"] == pytest.approx(0.262)
    assert row["object_id"] == "mock-s0-00000001"
