"""The independent Sersic generator: determinism, truth recovered from the pixels, the noise
model, and a data set the local source reads with its truth columns."""

from __future__ import annotations

import numpy as np
import pytest

from astropt.data import mock
from astropt.data.sersic_mock import (
    GENERATOR_VERSION,
    simulate,
    simulate_galaxy,
    sky_sigma,
    write_sersic_dataset,
)
from astropt.science.photometry import aperture_masks


@pytest.fixture(scope="module")
def galaxies() -> list[dict]:
    return list(simulate(16, seed=11))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_same_seed_and_index_give_the_same_galaxy_regardless_of_batch() -> None:
    alone = simulate_galaxy(3, 5)
    in_batch = list(simulate(3, seed=3, start=4))[1]
    assert alone["object_id"] == in_batch["object_id"] == "sersic-s3-00000005"
    np.testing.assert_array_equal(alone["flux"], in_batch["flux"])
    np.testing.assert_array_equal(alone["truth"], in_batch["truth"])
    assert alone["params"] == in_batch["params"]
    assert simulate_galaxy(4, 5)["params"]["mag_r"] != alone["params"]["mag_r"]


def test_it_is_not_the_mock_same_instrument_other_galaxies() -> None:
    ours, theirs = simulate_galaxy(0, 0), mock.simulate_galaxy(0, 0)
    assert ours["flux"].shape == theirs["flux"].shape == (4, mock.IMAGE_SIZE, mock.IMAGE_SIZE)
    assert ours["bands"] == theirs["bands"]
    assert ours["params"]["mag_r"] != theirs["params"]["mag_r"]
    for key in ("mag_r", "g_r", "hlr_arcsec", "q", "sersic_n", "psf_beta", "psf_fwhm_r"):
        assert key in ours["params"]


def test_parameters_stay_in_their_ranges(galaxies) -> None:
    for g in galaxies:
        p = g["params"]
        assert 0.5 <= p["sersic_n"] <= 4.0 and 2.5 <= p["psf_beta"] <= 4.5
        assert 17.5 <= p["mag_r"] <= 22.0 and 0.25 <= p["q"] <= 1.0
        assert p["psf_fwhm_g"] > p["psf_fwhm_z"]  # seeing improves to the red


def test_truth_flux_matches_the_magnitude_and_aperture_flux_follows_it(galaxies) -> None:
    mags = np.array([g["params"]["mag_r"] for g in galaxies])
    for g in galaxies:  # the whole stamp holds nearly all of the light
        total = g["truth"].sum(axis=(1, 2))
        expected = [g["params"][f"flux_{b}"] for b in "griz"]
        np.testing.assert_allclose(total, expected, rtol=0.12)
    big = aperture_masks(mock.IMAGE_SIZE, (32.0,))[0]
    measured = np.array([g["flux"][1][big].sum() for g in galaxies])
    assert _spearman(measured, -mags) > 0.9


def test_concentration_follows_size(galaxies) -> None:
    small, big = aperture_masks(mock.IMAGE_SIZE, (3.0, 32.0))
    conc = np.array([g["truth"][1][small].sum() / g["truth"][1][big].sum() for g in galaxies])
    hlr = np.array([g["params"]["hlr_arcsec"] for g in galaxies])
    assert _spearman(conc, -hlr) > 0.6


def test_noise_in_an_empty_corner_matches_the_sky_noise() -> None:
    g = simulate_galaxy(2, 3)
    corner = g["flux"][:, :24, :24] - g["truth"][:, :24, :24]
    sigma = sky_sigma(g["params"]["sky_offset_mag"])
    np.testing.assert_allclose(corner.std(axis=(1, 2)), sigma, rtol=0.15)
    np.testing.assert_allclose(g["noise_sigma"], sigma, rtol=1e-5)
    assert np.abs(corner.mean(axis=(1, 2))).max() < 0.2 * sigma.min()  # sky subtracted


def test_the_local_source_reads_a_written_data_set_with_its_truth(tmp_path) -> None:
    from astropt.science.sources import SourceSpec, open_source

    out = write_sersic_dataset(tmp_path / "sersic", n=3, seed=5, shard_size=2)
    assert write_sersic_dataset(out, n=3, seed=5) == out  # a finished set is reused
    assert (out / "shard-00001.parquet").is_file()
    assert GENERATOR_VERSION in (out / "manifest.json").read_text()
    source = open_source(SourceSpec("local", path=str(out)))
    assert source.object_ids == [f"sersic-s5-{i:08d}" for i in range(3)]
    expected = [simulate_galaxy(5, i)["params"] for i in range(3)]
    for key in ("mag_r", "g_r", "hlr_arcsec", "q", "sersic_n"):
        np.testing.assert_allclose(source.columns[key], [p[key] for p in expected])
    (_, flux), *_ = list(source.batches(3))
    np.testing.assert_array_equal(flux[2], simulate_galaxy(5, 2)["flux"])


def test_a_foreign_directory_is_left_alone(tmp_path) -> None:
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(FileExistsError):
        write_sersic_dataset(tmp_path, n=1)
