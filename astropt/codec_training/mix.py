"""A broad GalSim training mix for the shipped codec (noise-free truth + per-band sigma).

Deliberately wider than :mod:`astropt.data.mock` so the codec does not learn one
simulator: single Sersic profiles (n 0.5-6) or bulge + disk, sizes 0.15"-4", Moffat
(beta 2.5-4.5) or Kolmogorov PSFs of 0.7"-2.2" FWHM, offsets up to 6 px, r magnitudes
15.5-23.5, sky noise from 0.4x to 2.5x Legacy Survey DR10 depth, plus companions and
stars. Only the truth and sigma are stored: the trainer adds fresh noise to every draw.
"""

from __future__ import annotations

import time
from pathlib import Path

import galsim
import numpy as np
from tqdm.auto import tqdm

from astropt.data.mock import band_fluxes, mag_to_nanomaggies

STAMP = 96
PIXEL_SCALE = 0.262
NOMINAL_SIGMA = np.array([0.004, 0.006, 0.010, 0.012], dtype=np.float64)  # DR10-like, g r i z
_GSPARAMS = galsim.GSParams(maximum_fft_size=16384, folding_threshold=2e-3)
POOL_VERSION = "codec-mix-1"


def _random_colours(rng: np.random.Generator, red: bool) -> np.ndarray:
    mean = np.array([0.9, 0.42, 0.28]) if red else np.array([0.45, 0.2, 0.1])
    return rng.normal(mean, [0.2, 0.12, 0.12])


def _psfs(rng: np.random.Generator) -> list[galsim.GSObject]:
    fwhm_r = rng.uniform(0.7, 2.2)
    kolmogorov = rng.uniform() < 0.3
    beta = float(rng.choice([2.5, 3.0, 3.5, 4.5]))  # a grid: GalSim caches Moffat tables
    band_factor = np.array([1.08, 1.0, 0.97, 0.95]) * rng.uniform(0.95, 1.05, size=4)
    psfs = []
    for factor in band_factor:
        fwhm = fwhm_r * factor
        psf = (
            galsim.Kolmogorov(fwhm=fwhm, gsparams=_GSPARAMS)
            if kolmogorov
            else galsim.Moffat(beta=beta, fwhm=fwhm, gsparams=_GSPARAMS)
        )
        psfs.append(psf.shear(g=rng.uniform(0, 0.05), beta=rng.uniform(0, 180) * galsim.degrees))
    return psfs


# GalSim builds costly lookup tables per Sersic index; a fixed grid of indices keeps them cached.
SERSIC_GRID = np.array([0.5, 0.7, 1.0, 1.3, 1.7, 2.2, 3.0, 4.0, 5.0, 6.0])


def _sersic(n: float, hlr: float, q: float, angle: float) -> galsim.GSObject:
    n_grid = float(SERSIC_GRID[np.argmin(np.abs(SERSIC_GRID - n))])
    profile = galsim.Sersic(n=n_grid, half_light_radius=hlr, gsparams=_GSPARAMS)
    return profile.shear(q=q, beta=angle * galsim.degrees)


def _galaxy(rng: np.random.Generator, mag_r: float, size_scale: float) -> list[tuple]:
    """(profile, band fluxes) components of one galaxy."""
    flux_r = mag_to_nanomaggies(mag_r)
    log_hlr = np.log10(2.0 * size_scale) - (mag_r - 17.0) * 0.12 + 0.25 * rng.normal()
    hlr = float(np.clip(10**log_hlr, 0.15, 4.0))
    angle = rng.uniform(0, 180)
    if rng.uniform() < 0.4:  # one Sersic profile
        n = float(np.exp(rng.uniform(np.log(0.5), np.log(6.0))))
        profile = _sersic(n, hlr, rng.uniform(0.2, 1.0), angle)
        return [(profile, band_fluxes(flux_r, _random_colours(rng, red=n > 2.5)))]
    bulge_fraction = rng.beta(0.8, 1.6)
    bulge_n = rng.uniform(2.5, 6.0)
    disk_n = rng.uniform(0.6, 1.5)
    bulge = _sersic(bulge_n, max(0.12, hlr * rng.uniform(0.15, 0.7)), rng.uniform(0.5, 1.0), angle)
    disk = _sersic(disk_n, hlr, rng.uniform(0.15, 1.0), angle + rng.normal(0, 5))
    return [
        (bulge, band_fluxes(flux_r * bulge_fraction, _random_colours(rng, red=True))),
        (disk, band_fluxes(flux_r * (1 - bulge_fraction), _random_colours(rng, red=False))),
    ]


def draw_truth(seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free ``float32[4, 96, 96]`` (nanomaggies) and a sky sigma ``float32[4]``."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, index, 0xC0DE])
    # Mostly faint like galaxy counts (~10**(0.35 m)) over 16-23.5, plus a bright tail.
    if rng.uniform() < 0.25:
        mag_r = float(rng.uniform(15.5, 19.5))
    else:
        lo, hi = 10 ** (0.35 * 16.0), 10 ** (0.35 * 23.5)
        mag_r = float(np.log10(lo + rng.uniform() * (hi - lo)) / 0.35)
    # (profile, fluxes, offset in pixels)
    sources: list[tuple] = []
    offset = rng.normal(0, 1.5, size=2) if rng.uniform() < 0.7 else rng.uniform(-6, 6, size=2)
    for profile, fluxes in _galaxy(rng, mag_r, size_scale=rng.uniform(0.6, 1.6)):
        sources.append((profile, fluxes, offset))
    for _ in range(rng.poisson(0.7)):  # companions, mostly fainter
        mag = mag_r + rng.uniform(-0.5, 4.0)
        where = rng.uniform(-44, 44, size=2)
        for profile, fluxes in _galaxy(rng, mag, size_scale=rng.uniform(0.5, 1.2)):
            sources.append((profile, fluxes, where))
    for _ in range(rng.poisson(0.35)):  # stars
        star_flux = band_fluxes(
            mag_to_nanomaggies(rng.uniform(16.0, 23.5)), rng.normal([0.8, 0.3, 0.15], 0.3)
        )
        sources.append(
            (galsim.DeltaFunction(gsparams=_GSPARAMS), star_flux, rng.uniform(-44, 44, size=2))
        )

    psfs = _psfs(rng)
    truth = np.zeros((4, STAMP, STAMP), dtype=np.float32)
    for band, psf in enumerate(psfs):
        scene = galsim.Sum(
            [
                profile.withFlux(float(fluxes[band])).shift(*(np.asarray(where) * PIXEL_SCALE))
                for profile, fluxes, where in sources
            ]
        )
        image = galsim.Convolve(scene, psf).drawImage(nx=STAMP, ny=STAMP, scale=PIXEL_SCALE)
        truth[band] = image.array
    depth = np.exp(rng.uniform(np.log(0.4), np.log(2.5)))
    sigma = NOMINAL_SIGMA * depth * rng.uniform(0.8, 1.25, size=4)
    return truth, sigma.astype(np.float32)


def build_pool(
    directory: str | Path, n: int, seed: int, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Draw (or reuse from ``directory``) ``n`` training truths and sigmas."""
    directory = Path(directory)
    truth_path, sigma_path = directory / "truth.npy", directory / "sigma.npy"
    tag_path = directory / "pool.txt"
    tag = f"{POOL_VERSION} n={n} seed={seed}"
    cached = truth_path.is_file() and sigma_path.is_file() and tag_path.is_file()
    if cached and tag_path.read_text().splitlines()[:1] == [tag]:
        return np.load(truth_path, mmap_mode="r"), np.load(sigma_path)
    directory.mkdir(parents=True, exist_ok=True)
    truth = np.lib.format.open_memmap(
        directory / "truth.tmp.npy", mode="w+", dtype=np.float32, shape=(n, 4, STAMP, STAMP)
    )
    sigma = np.empty((n, 4), dtype=np.float32)
    started = time.perf_counter()
    for i in tqdm(range(n), desc="drawing training galaxies", unit="gal", disable=not progress):
        truth[i], sigma[i] = draw_truth(seed, i)
    truth.flush()
    del truth
    (directory / "truth.tmp.npy").replace(truth_path)
    np.save(sigma_path, sigma)
    tag_path.write_text(f"{tag}\nseconds={time.perf_counter() - started:.1f}\n")
    return np.load(truth_path, mmap_mode="r"), sigma
