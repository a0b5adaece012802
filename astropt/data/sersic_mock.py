"""A second, independent galaxy generator, for evaluation only (no model trains on it).

The project's mock (:mod:`astropt.data.mock`) draws a de Vaucouleurs bulge plus an
exponential disk through a Moffat PSF of fixed beta 3.5, with Gaussian sky noise. A model
trained on it could learn that generator's quirks rather than galaxies; probing it on images
from a different generator says how much of what it reads carries over. This one differs in
every ingredient but the instrument:

- **profile**: one Sersic profile per galaxy, index ``n`` in [0.5, 4] (log-uniform; no bulge
  or disk), sheared to axis ratio ``q`` in [0.25, 1], the same profile in every band;
- **population**: r magnitudes uniform in 17.5-22 (the mock weights the faint end); a
  shallower size-magnitude relation with more scatter; colours tied to the Sersic index
  (concentrated galaxies are redder) instead of per-component colours;
- **PSF**: Moffat with ``beta`` in [2.5, 4.5] per galaxy and a per-band FWHM (r in 0.9-1.8",
  scaled to the blue with a small per-band jitter);
- **noise**: Poisson counts of sky plus source at an effective coadd gain, plus Gaussian read
  noise, sky subtracted. Sky brightness (g 22.0, r 21.0, i 20.3, z 19.6 mag/arcsec^2, each
  +-0.3 mag per galaxy) makes the sky noise per pixel about g 0.004, r 0.010, i 0.019,
  z 0.030 nanomaggies: deeper than the mock nowhere and 2-3x shallower in i and z; the
  source's own shot noise (absent from the mock) adds to the centres of bright galaxies;
- **centre**: offsets uniform in +-1.5 px (the mock: Gaussian, sigma 0.7 px).

The instrument is the mock's: bands g, r, i, z (``DES-*``), 160x160 pixels at 0.262"/px,
nanomaggies (zero point 22.5). Data sets are written in the mock's on-disk schema (Parquet
shards with ``image`` {band, flux, psf_fwhm, scale}, ``object_id``, ``truth``,
``noise_sigma``, ``params``), so ``astropt embed --data local --path DIR`` and the probes
read them; the truth columns (``params``) include ``mag_r``, ``g_r``, ``hlr_arcsec`` (the
intrinsic half-light radius before the PSF; GalSim's shear keeps the area, so it is the
circularised radius), ``q``, ``sersic_n``, the PSF and the fluxes. Galaxy ``index`` of
``seed`` is always the same image.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import galsim
import numpy as np

from astropt.data.mock import (
    BANDS,
    IMAGE_SIZE,
    PIXEL_SCALE,
    band_fluxes,
    mag_to_nanomaggies,
    quantisation_step,
    quantise,
    write_galaxies,
)
from astropt.data.mock import is_complete as mock_is_complete

GENERATOR_VERSION = "sersic-galsim-1"
SERSIC_N_RANGE = (0.5, 4.0)
MOFFAT_BETA_RANGE = (2.5, 4.5)
SKY_MAG_ARCSEC2 = np.array([22.0, 21.0, 20.3, 19.6])  # g, r, i, z sky brightness
GAIN = np.array([6000.0, 3000.0, 1500.0, 1200.0])  # effective coadd electrons per nanomaggy
READ_NOISE_E = 8.0  # electrons per pixel
_PSF_BAND_FACTOR = np.array([1.12, 1.0, 0.94, 0.90])  # ~ wavelength^-0.2
_GSPARAMS = galsim.GSParams(maximum_fft_size=16384)
_RNG_SALT = 0x5E451C  # keeps this generator's streams apart from the mock's


def _draw_params(rng: np.random.Generator) -> dict[str, float]:
    mag_r = rng.uniform(17.5, 22.0)
    lo, hi = np.log(SERSIC_N_RANGE[0]), np.log(SERSIC_N_RANGE[1])
    sersic_n = float(np.exp(rng.uniform(lo, hi)))
    # ~1.6" at r=17.5 to ~0.8" at r=22, 0.25 dex scatter; concentrated galaxies a bit smaller
    log_hlr = np.log10(1.6) - 0.07 * (mag_r - 17.5) - 0.05 * np.log2(sersic_n) + 0.25 * rng.normal()
    hlr = float(np.clip(10**log_hlr, 0.25, 4.0))
    # colours redden with concentration and (weakly) with faintness
    redness = (np.log(sersic_n) - lo) / (hi - lo)  # 0 (n=0.5) .. 1 (n=4)
    g_r = 0.30 + 0.55 * redness + 0.025 * (mag_r - 17.5) + 0.10 * rng.normal()
    r_i = 0.15 + 0.25 * redness + 0.06 * rng.normal()
    i_z = 0.05 + 0.20 * redness + 0.06 * rng.normal()
    fwhm_r = rng.uniform(0.9, 1.8)
    fwhm = fwhm_r * _PSF_BAND_FACTOR * rng.uniform(0.96, 1.04, size=4)
    fwhm[1] = fwhm_r
    params: dict[str, float] = {
        "mag_r": float(mag_r),
        "g_r": float(g_r),
        "r_i": float(r_i),
        "i_z": float(i_z),
        "sersic_n": sersic_n,
        "hlr_arcsec": hlr,
        "q": float(rng.uniform(0.25, 1.0)),
        "position_angle_deg": float(rng.uniform(0.0, 180.0)),
        "offset_x_px": float(rng.uniform(-1.5, 1.5)),
        "offset_y_px": float(rng.uniform(-1.5, 1.5)),
        "psf_beta": float(rng.uniform(*MOFFAT_BETA_RANGE)),
        "sky_offset_mag": float(rng.uniform(-0.3, 0.3)),
    }
    for band, name in enumerate("griz"):
        params[f"psf_fwhm_{name}"] = float(fwhm[band])
    fluxes = band_fluxes(float(mag_to_nanomaggies(mag_r)), np.array([g_r, r_i, i_z]))
    for band, name in enumerate("griz"):
        params[f"flux_{name}"] = float(fluxes[band])
    return params


def _render(params: dict[str, float], size: int) -> np.ndarray:
    profile = galsim.Sersic(
        n=params["sersic_n"], half_light_radius=params["hlr_arcsec"], gsparams=_GSPARAMS
    ).shear(q=params["q"], beta=params["position_angle_deg"] * galsim.degrees)
    offset = (params["offset_x_px"], params["offset_y_px"])
    truth = np.empty((len(BANDS), size, size), dtype=np.float32)
    for band, name in enumerate("griz"):
        psf = galsim.Moffat(
            beta=params["psf_beta"], fwhm=params[f"psf_fwhm_{name}"], gsparams=_GSPARAMS
        )
        image = galsim.Convolve(profile.withFlux(params[f"flux_{name}"]), psf).drawImage(
            nx=size, ny=size, scale=PIXEL_SCALE, offset=offset
        )
        truth[band] = image.array
    return truth


def sky_per_pixel(sky_offset_mag: float = 0.0) -> np.ndarray:
    """Sky level per pixel (nanomaggies) in g, r, i, z."""
    mags = SKY_MAG_ARCSEC2 + sky_offset_mag
    return 10.0 ** ((22.5 - mags) / 2.5) * PIXEL_SCALE**2


def sky_sigma(sky_offset_mag: float = 0.0) -> np.ndarray:
    """Per-pixel noise (nanomaggies) of an empty sky pixel: sky shot noise and read noise."""
    return np.sqrt(sky_per_pixel(sky_offset_mag) / GAIN + (READ_NOISE_E / GAIN) ** 2)


def _observe(truth: np.ndarray, sky: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Counts of sky + source (Poisson) plus read noise, back in nanomaggies, sky subtracted."""
    gain = GAIN[:, None, None]
    expected = gain * (np.clip(truth, 0.0, None) + sky[:, None, None])
    counts = rng.poisson(expected).astype(np.float64)
    counts += rng.normal(0.0, READ_NOISE_E, size=counts.shape)
    return (counts / gain - sky[:, None, None]).astype(np.float32)


def object_id(seed: int, index: int) -> str:
    return f"sersic-s{seed}-{index:08d}"


def simulate_galaxy(seed: int, index: int, *, size: int = IMAGE_SIZE) -> dict[str, Any]:
    """One galaxy: noisy ``flux`` and noise-free ``truth`` float32[4, size, size]."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    rng = np.random.default_rng([seed & 0xFFFFFFFF, index, _RNG_SALT])
    params = _draw_params(rng)
    truth = _render(params, size)
    flux = _observe(truth, sky_per_pixel(params["sky_offset_mag"]), rng)
    sigma = sky_sigma(params["sky_offset_mag"]).astype(np.float32)
    step = quantisation_step(sigma)
    return {
        "flux": quantise(flux, step),
        "truth": quantise(truth, step),
        "noise_sigma": sigma,
        "bands": list(BANDS),
        "object_id": object_id(seed, index),
        "params": params,
    }


def simulate(n: int, seed: int = 0, start: int = 0) -> Iterator[dict[str, Any]]:
    for index in range(start, start + n):
        yield simulate_galaxy(seed, index)


def is_complete(directory: str | Path, n: int, seed: int) -> bool:
    return mock_is_complete(directory, n, seed, GENERATOR_VERSION)


def write_sersic_dataset(
    out_dir: str | Path, n: int, seed: int = 0, *, shard_size: int = 256
) -> Path:
    """Write ``n`` galaxies of ``seed`` as Parquet shards + ``manifest.json`` into ``out_dir``
    (reused when its manifest already matches; written beside it and renamed into place), in
    the mock's on-disk schema (:func:`astropt.data.mock.write_galaxies`)."""
    return write_galaxies(
        out_dir,
        n,
        seed,
        simulate,
        GENERATOR_VERSION,
        {"sky_sigma_nanomaggies": sky_sigma().tolist()},
        shard_size=shard_size,
        progress=False,
    )
