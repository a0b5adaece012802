"""Planted anomalies for judging anomaly scores: mock cut-outs that are not normal galaxies.

Each kind starts from a galaxy of the GalSim mock (:mod:`astropt.data.mock`, same bands,
160x160 px, nanomaggies, same noise model) and adds what a survey pipeline or the sky adds.
Everything lands inside the central 96x96 pixels, the crop a model reads.

Astrophysical: ``star_spikes`` (a bright star with four diffraction spikes beside the galaxy),
``lensed_arc`` (a blue arc or Einstein ring around the galaxy), ``merger`` (a second galaxy
overlapping it, with a tidal tail). Instrumental: ``satellite_trail`` (a straight streak
through the image, in one or two bands), ``bleed_column`` (a saturated star whose charge
bleeds along its column), ``bad_column`` (a hot or dead column in one band), ``cosmic_rays``
(sharp tracks in one band), ``chip_gap`` (a masked band of zeros), ``missing_band`` (one band
blank, noise only), ``pure_noise`` (sky only, no galaxy).

``planted(kind, seed, index)`` is always the same image. Object ids are
``anom-<kind>-s<seed>-<index>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from astropt.data.mock import (
    IMAGE_SIZE,
    NOISE_SIGMA,
    PIXEL_SCALE,
    mag_to_nanomaggies,
    simulate_galaxy,
)

KINDS = (
    "star_spikes",
    "lensed_arc",
    "merger",
    "satellite_trail",
    "bleed_column",
    "bad_column",
    "cosmic_rays",
    "chip_gap",
    "missing_band",
    "pure_noise",
)
CROP = 96  # the centre crop a model reads
_HALF = CROP // 2 - 6  # how far from the centre a planted feature may sit and still be read
_KIND_SALT = {kind: 1000 + i for i, kind in enumerate(KINDS)}


def _grid(size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x - size / 2, y - size / 2


def _psf_sigma_px(params: dict[str, float]) -> float:
    return params["psf_fwhm_r"] / PIXEL_SCALE / 2.355


def _colour_fluxes(total_r: float, g_r: float, r_i: float, i_z: float) -> np.ndarray:
    mags_rel = np.array([g_r, 0.0, -r_i, -r_i - i_z])
    return total_r * 10.0 ** (-0.4 * mags_rel)


def _point(params: dict[str, float], cx: float, cy: float, size: int = IMAGE_SIZE) -> np.ndarray:
    """A unit-flux Moffat-like point source (beta 3.5) at (cx, cy) px from the centre."""
    x, y = _grid(size)
    alpha = params["psf_fwhm_r"] / PIXEL_SCALE / (2 * np.sqrt(2 ** (1 / 3.5) - 1))
    profile = (1 + ((x - cx) ** 2 + (y - cy) ** 2) / alpha**2) ** -3.5
    return (profile / profile.sum()).astype(np.float32)


def _offset(rng: np.random.Generator, lo: float, hi: float) -> tuple[float, float]:
    r, phi = rng.uniform(lo, hi), rng.uniform(0, 2 * np.pi)
    return float(r * np.cos(phi)), float(r * np.sin(phi))


def _star_spikes(rng: np.random.Generator, g: dict[str, Any]) -> np.ndarray:
    cx, cy = _offset(rng, 8, _HALF - 10)
    total_r = float(mag_to_nanomaggies(rng.uniform(14.5, 16.5)))
    fluxes = _colour_fluxes(
        total_r, rng.uniform(0.3, 1.4), rng.uniform(0.1, 0.6), rng.uniform(0.0, 0.3)
    )
    star = _point(g["params"], cx, cy)
    x, y = _grid()
    theta = rng.uniform(0, np.pi / 2)
    u = (x - cx) * np.cos(theta) + (y - cy) * np.sin(theta)
    v = -(x - cx) * np.sin(theta) + (y - cy) * np.cos(theta)
    width = max(0.7, _psf_sigma_px(g["params"]) * 0.5)
    spikes = (
        np.exp(-0.5 * (v / width) ** 2) / (1 + np.abs(u) / 3.0) ** 1.5
        + np.exp(-0.5 * (u / width) ** 2) / (1 + np.abs(v) / 3.0) ** 1.5
    )
    spikes = (spikes / spikes.sum()).astype(np.float32)
    return g["flux"] + fluxes[:, None, None] * (0.85 * star + 0.15 * spikes)[None]


def _lensed_arc(rng: np.random.Generator, g: dict[str, Any]) -> np.ndarray:
    x, y = _grid()
    cx, cy = g["params"]["offset_x_px"], g["params"]["offset_y_px"]
    r_e = rng.uniform(7.0, 14.0)  # Einstein radius, px (1.8-3.7")
    r = np.hypot(x - cx, y - cy)
    phi = np.arctan2(y - cy, x - cx)
    span = rng.uniform(np.pi / 2, 2 * np.pi)  # arc length; 2 pi: a full ring
    centre = rng.uniform(-np.pi, np.pi)
    along = np.angle(np.exp(1j * (phi - centre)))
    arc = np.exp(-0.5 * ((r - r_e) / 0.8) ** 2) * np.exp(
        -0.5 * (along / (span / 2.5)) ** 2 if span < 6 else 0.0
    )
    arc = gaussian_filter(arc, _psf_sigma_px(g["params"]))
    arc = (arc / arc.sum()).astype(np.float32)
    total_r = float(mag_to_nanomaggies(rng.uniform(18.5, 20.0)))
    fluxes = _colour_fluxes(
        total_r, rng.uniform(-0.1, 0.3), rng.uniform(-0.1, 0.2), rng.uniform(-0.1, 0.2)
    )
    return g["flux"] + fluxes[:, None, None] * arc[None]


def _merger(rng: np.random.Generator, g: dict[str, Any], seed: int, index: int) -> np.ndarray:
    other = simulate_galaxy(seed + 7919, index)["truth"]
    dx, dy = _offset(rng, 5, 14)
    companion = np.roll(other, (int(round(dy)), int(round(dx))), axis=(1, 2))
    ratio = rng.uniform(0.5, 1.5) * g["truth"].sum() / max(float(other.sum()), 1e-6)
    x, y = _grid()
    bend = rng.uniform(-0.04, 0.04)
    angle = np.arctan2(dy, dx) + np.pi + rng.uniform(-0.6, 0.6)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle) - bend * u**2
    tail = np.exp(-0.5 * (v / 2.0) ** 2) * np.exp(-np.clip(u, 0, None) / 15.0) * (u > 0)
    tail = gaussian_filter(tail, _psf_sigma_px(g["params"])).astype(np.float32)
    tail_flux = 0.3 * g["truth"].sum(axis=(1, 2)) / max(float(tail.sum()), 1e-6)
    return g["flux"] + ratio * companion + tail_flux[:, None, None] * tail[None]


def _line(rng: np.random.Generator, width: float) -> np.ndarray:
    x, y = _grid()
    cx, cy = _offset(rng, 0, _HALF - 8)
    theta = rng.uniform(0, np.pi)
    distance = -(x - cx) * np.sin(theta) + (y - cy) * np.cos(theta)
    return np.exp(-0.5 * (distance / width) ** 2).astype(np.float32)


def _satellite_trail(rng: np.random.Generator, g: dict[str, Any]) -> np.ndarray:
    trail = _line(rng, rng.uniform(0.8, 1.6))
    flux = g["flux"].copy()
    bands = rng.choice(4, size=rng.integers(1, 3), replace=False)
    for band in bands:
        flux[band] += rng.uniform(10, 60) * g["noise_sigma"][band] * trail
    return flux


def _bleed_column(rng: np.random.Generator, g: dict[str, Any]) -> np.ndarray:
    cx, cy = _offset(rng, 10, _HALF - 10)
    total_r = float(mag_to_nanomaggies(rng.uniform(11.5, 13.0)))
    fluxes = _colour_fluxes(
        total_r, rng.uniform(0.3, 1.2), rng.uniform(0.1, 0.5), rng.uniform(0.0, 0.3)
    )
    flux = g["flux"] + fluxes[:, None, None] * _point(g["params"], cx, cy)[None]
    col = int(round(IMAGE_SIZE / 2 + cx))
    row = int(round(IMAGE_SIZE / 2 + cy))
    length = int(rng.integers(20, 60))
    width = int(rng.integers(1, 4))
    for band in range(4):
        level = 300 * NOISE_SIGMA[band] * rng.uniform(0.8, 1.2)
        flux[band] = np.minimum(flux[band], level)  # the saturated core is flat
        flux[
            band, max(0, row - length) : row + length, col - width // 2 : col - width // 2 + width
        ] = level
    return flux


def _bad_column(rng: np.random.Generator, g: dict[str, Any]) -> np.ndarray:
    flux = g["flux"].copy()
    band = int(rng.integers(4))
    col = IMAGE_SIZE // 2 + int(rng.integers(-_HALF + 5, _HALF - 5))
    width = int(rng.integers(1, 3))
    hot = rng.uniform() < 0.6
    value = rng.uniform(15, 80) * g["noise_sigma"][band] if hot else 0.0
    start = int(rng.integers(0, IMAGE_SIZE // 3))
    flux[band, start:, col : col + width] = value
    return flux


def _cosmic_rays(rng: np.random.Generator, g: dict[str, Any]) -> np.ndarray:
    flux = g["flux"].copy()
    band = int(rng.integers(4))
    lo = IMAGE_SIZE // 2 - _HALF
    for _ in range(int(rng.integers(4, 12))):
        x0, y0 = rng.uniform(lo, lo + 2 * _HALF, size=2)
        length, theta = rng.uniform(1, 12), rng.uniform(0, 2 * np.pi)
        for t in np.linspace(0, length, int(length * 2) + 1):
            xi, yi = int(x0 + t * np.cos(theta)), int(y0 + t * np.sin(theta))
            if 0 <= xi < IMAGE_SIZE and 0 <= yi < IMAGE_SIZE:
                flux[band, yi, xi] += rng.uniform(30, 150) * g["noise_sigma"][band]
    return flux


def _chip_gap(rng: np.random.Generator, g: dict[str, Any]) -> np.ndarray:
    flux = g["flux"].copy()
    width = int(rng.integers(8, 20))
    start = IMAGE_SIZE // 2 + int(rng.integers(-_HALF + 8, _HALF - 8 - width))
    if rng.uniform() < 0.5:
        flux[:, :, start : start + width] = 0.0
    else:
        flux[:, start : start + width, :] = 0.0
    return flux


def _missing_band(rng: np.random.Generator, g: dict[str, Any]) -> np.ndarray:
    flux = g["flux"].copy()
    band = int(rng.integers(4))
    flux[band] = rng.standard_normal(flux[band].shape).astype(np.float32) * g["noise_sigma"][band]
    return flux


def _pure_noise(rng: np.random.Generator, g: dict[str, Any]) -> np.ndarray:
    scale = rng.uniform(1.0, 3.0)
    noise = rng.standard_normal(g["flux"].shape).astype(np.float32)
    return noise * (scale * g["noise_sigma"])[:, None, None]


_MAKERS: dict[str, Callable[[np.random.Generator, dict[str, Any]], np.ndarray]] = {
    "star_spikes": _star_spikes,
    "lensed_arc": _lensed_arc,
    "satellite_trail": _satellite_trail,
    "bleed_column": _bleed_column,
    "bad_column": _bad_column,
    "cosmic_rays": _cosmic_rays,
    "chip_gap": _chip_gap,
    "missing_band": _missing_band,
    "pure_noise": _pure_noise,
}


def anomaly_id(kind: str, seed: int, index: int) -> str:
    return f"anom-{kind}-s{seed}-{index:06d}"


def planted(kind: str, seed: int, index: int) -> dict[str, Any]:
    """One anomaly: ``flux`` float32 ``[4, 160, 160]`` (nanomaggies), ``kind``, ``object_id``,
    and the ``params`` of the mock galaxy it was made from."""
    if kind not in KINDS:
        raise ValueError(f"unknown anomaly kind {kind!r}; kinds: {', '.join(KINDS)}")
    base_seed = (seed * 7 + _KIND_SALT[kind]) & 0xFFFFFFFF  # galaxies no normal mock of `seed` has
    g = simulate_galaxy(base_seed, index)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, index, _KIND_SALT[kind]])
    flux = _merger(rng, g, base_seed, index) if kind == "merger" else _MAKERS[kind](rng, g)
    return {
        "flux": np.asarray(flux, dtype=np.float32),
        "kind": kind,
        "object_id": anomaly_id(kind, seed, index),
        "params": g["params"],
        "noise_sigma": g["noise_sigma"],
    }
