"""The display scale: faint galaxies on a dark sky, bright ones unsaturated, one renderer."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from astropt.data.mock import simulate
from astropt.plotting import RGB_BANDS, display_scale, galaxy_grid, lupton_rgb


@pytest.fixture(scope="module")
def galaxies() -> list[dict]:
    pool = list(simulate(24, seed=4242))
    return sorted(pool, key=lambda g: float(np.sum(g["truth"][1])))  # faintest first


def sky_mask(galaxy: dict) -> np.ndarray:
    """Pixels whose noise-free truth is far below the noise in every displayed band."""
    sigma = np.asarray(galaxy["noise_sigma"])
    truth = np.abs(np.asarray(galaxy["truth"]))
    return np.all([truth[b] < 0.05 * sigma[b] for b in RGB_BANDS], axis=0)


def core_mask(galaxy: dict) -> np.ndarray:
    truth_r = np.asarray(galaxy["truth"][1])
    return truth_r >= np.percentile(truth_r, 99.8)


def test_sky_noise_of_a_faint_galaxy_renders_dark_not_saturated(galaxies: list[dict]) -> None:
    faint = galaxies[0]
    rgb = lupton_rgb(faint["flux"]).astype(float)
    sky = sky_mask(faint)
    assert sky.sum() > 0.5 * sky.size  # a faint galaxy: most of the cut-out is sky
    brightness = rgb.mean(axis=-1)
    assert np.median(brightness[sky]) < 10  # of 255: the sky is black or nearly so
    assert np.percentile(rgb.max(axis=-1)[sky], 99) < 128  # no bright confetti
    assert (rgb[sky] >= 254).mean() < 1e-3  # and essentially no saturated channel
    # ... while the galaxy itself stands out from that sky
    assert brightness[core_mask(faint)].mean() > 3 * brightness[sky].mean()


def test_scale_follows_the_noise_and_the_bright_end(galaxies: list[dict]) -> None:
    faint = galaxies[0]
    # the same galaxy 2000 times brighter over the same noise: the bright end sets the scale
    bright = {**faint, "flux": np.asarray(faint["flux"]) + 1999 * np.asarray(faint["truth"])}
    for galaxy in (faint, bright):
        scale = display_scale(galaxy["flux"])
        expected_noise = (
            np.sqrt(np.sum(np.square(np.asarray(galaxy["noise_sigma"])[list(RGB_BANDS)]))) / 3
        )
        assert scale.noise == pytest.approx(
            expected_noise, rel=0.15
        )  # MAD finds the injected noise
        assert all(
            abs(m) < 0.5 * scale.noise for m in scale.minimum
        )  # sky-subtracted mock: black at ~0
    assert display_scale(bright["flux"]).softening > 5 * display_scale(faint["flux"]).softening
    bright_rgb = lupton_rgb(bright["flux"]).astype(float)
    core = bright_rgb.mean(axis=-1)[core_mask(bright)]
    assert np.median(core) > 150  # bright ...
    assert (core >= 254).mean() < 0.5  # ... but not blown out
    assert np.median(bright_rgb.mean(axis=-1)[sky_mask(bright)]) < 10


def test_known_noise_overrides_the_estimate(galaxies: list[dict]) -> None:
    galaxy = galaxies[3]
    doubled = 2 * np.asarray(galaxy["noise_sigma"])
    assert display_scale(galaxy["flux"], noise_sigma=doubled).noise == pytest.approx(
        np.sqrt(np.sum(np.square(doubled[list(RGB_BANDS)]))) / 3
    )


def test_validation_figures_use_the_same_dark_sky(galaxies: list[dict]) -> None:
    crop = np.asarray(galaxies[0]["flux"])[:, 32:128, 32:128]
    png = galaxy_grid([[crop, crop]], ["codec tokens", "model prediction"])
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)
    near_black = (pixels.max(axis=-1) < 40).mean()
    assert near_black > 0.3  # the panels' sky; white margins and titles are the rest
    assert (pixels.max(axis=-1) - pixels.min(axis=-1) > 150).mean() < 0.01  # no vivid noise


def test_blank_and_nan_images_render(galaxies: list[dict]) -> None:
    blank = np.zeros((4, 32, 32), np.float32)
    assert lupton_rgb(blank).max() == 0
    holes = np.asarray(galaxies[1]["flux"]).copy()
    holes[:, :10] = np.nan
    assert lupton_rgb(holes).shape == (*holes.shape[1:], 3)
