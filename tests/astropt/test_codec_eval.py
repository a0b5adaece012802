"""The codec evaluator's figures on arrays whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from astropt.codec_training.commands import main as codec_main
from astropt.codec_training.evaluate import centre_crop, format_table, residual_stats


def _scene(n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    sigma = np.tile(np.array([0.004, 0.006, 0.010, 0.012], np.float32), (n, 1))
    truth = np.zeros((n, 4, 96, 96), np.float32)
    truth[:, :, 40:56, 40:56] = 2.0  # a bright 16x16 "galaxy"
    return truth, sigma


def test_rms_in_sigma_units_over_crop_and_galaxy_pixels() -> None:
    truth, sigma = _scene()
    recon = truth.copy()
    recon[:, :, 40:56, 40:56] += 0.5 * sigma[:, :, None, None]  # 0.5 sigma on the galaxy only
    stats = residual_stats(recon, truth, sigma)
    np.testing.assert_allclose(stats["rms_galaxy"], 0.5, rtol=1e-4)
    np.testing.assert_allclose(stats["rms_crop"], 0.5 * 16 / 96, rtol=1e-4)  # sqrt(256/9216) * 0.5


def test_flux_error_only_counts_bright_galaxies() -> None:
    truth, sigma = _scene()
    truth[2] *= 1e-4  # far below S/N 50 in the crop
    recon = truth * 1.01
    recon[2] = truth[2] * 3.0  # a terrible faint reconstruction must not count
    stats = residual_stats(recon, truth, sigma)
    np.testing.assert_allclose(stats["flux_error"], 0.01, rtol=1e-4)
    assert stats["n_bright"].tolist() == [2, 2, 2, 2]


def test_centre_crop_matches_aion_crop_of_160_pixel_cutouts() -> None:
    cube = np.arange(160 * 160, dtype=np.float32).reshape(1, 160, 160)
    crop = centre_crop(cube)
    assert crop.shape == (1, 96, 96)
    assert crop[0, 0, 0] == cube[0, 32, 32]


def test_table_reports_every_band_and_the_verdict() -> None:
    band = {
        "rms_crop_sigma": 0.2,
        "rms_galaxy_sigma": 0.8,
        "flux_error_bright": 0.015,
        "n_bright": 7,
        "median_rms_galaxy_sigma_per_object": 0.7,
    }
    report = {
        "codec": {"spec": "shipped", "fingerprint": "abc"},
        "n_galaxies": 10,
        "mock_seed": 5,
        "bands": {b: band for b in ("DES-G", "DES-R", "DES-I", "DES-Z")},
        "codes_used": 123,
        "bar": {"rms_crop": 1.0, "rms_galaxy": 1.0, "flux_error": 0.02},
        "passes_bar": True,
    }
    table = format_table(report)
    assert all(b in table for b in ("DES-G", "DES-R", "DES-I", "DES-Z"))
    assert "1.50%" in table and "PASS" in table and "123 of 10000" in table


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["codec", "evaluate", "--n", "0"], "--n must be >= 1"),
        (["codec", "evaluate", "--codec", "no/such/dir/x"], "unknown codec spec"),
    ],
)
def test_cli_bad_input_gets_a_clear_message(argv, message, capsys) -> None:
    assert codec_main(argv) == 2
    assert message in capsys.readouterr().err


def test_crosscheck_generator_is_deterministic_noisy_around_its_truth_and_off_the_mock() -> None:
    from astropt.codec_training.crosscheck import simulate_crosscheck
    from astropt.data.mock import simulate_galaxy

    a, b = simulate_crosscheck(5, 3), simulate_crosscheck(5, 3)
    assert all(np.array_equal(a[k], b[k]) for k in ("flux", "truth", "noise_sigma"))
    assert a["flux"].shape == a["truth"].shape == simulate_galaxy(5, 3)["flux"].shape
    pulls = [
        (g["flux"] - g["truth"]) / g["noise_sigma"][:, None, None]
        for g in (simulate_crosscheck(5, i) for i in range(4))
    ]
    assert np.std(pulls) == pytest.approx(1.0, abs=0.01)
    assert abs(np.mean(pulls)) < 0.01
    assert not np.allclose(a["truth"], simulate_galaxy(5, 3)["truth"], atol=1e-3)
    assert float(a["truth"].sum()) > 0


def test_cli_rejects_an_unknown_generator(capsys) -> None:
    with pytest.raises(SystemExit):
        codec_main(["codec", "evaluate", "--generator", "nope"])
    assert "invalid choice" in capsys.readouterr().err


def test_rms_by_brightness_splits_the_galaxy_pixels_by_truth_level() -> None:
    truth, sigma = _scene(2)
    s = sigma[:, :, None, None]
    truth[:, :, 40:56, 40:48] = 2.0 * s  # a faint half at 2 sigma ...
    truth[:, :, 40:56, 48:56] = 50.0 * s  # ... and a bright half at 50 sigma
    recon = truth.copy()
    recon[:, :, 40:56, 40:48] += 0.5 * s
    recon[:, :, 40:56, 48:56] -= 3.0 * s
    levels = residual_stats(recon, truth, sigma)[
        "rms_by_brightness"
    ]  # bins 1-3, 3-10, 10-30, 30-100, >100
    np.testing.assert_allclose(levels[0], 0.5, rtol=1e-4)
    np.testing.assert_allclose(levels[3], 3.0, rtol=1e-4)
    assert np.isnan(levels[[1, 2, 4]]).all()  # no pixels there
