"""A second, independent galaxy generator for checking a codec outside its training mix.

Neither the codec's training mix (:mod:`astropt.codec_training.mix`) nor the project mock
(:mod:`astropt.data.mock`) uses these ingredients: Spergel profiles (index nu from -0.6
to 2, i.e. cuspier than de Vaucouleurs to flatter than exponential), optional
unresolved nuclei, Gaussian or wide-winged Moffat (beta 2) PSFs, offsets up to 4 px and
depths from 0.6x to 1.6x DR10. Brightness and sizes follow the project mock (r 17-22,
faint-weighted) so the figures are comparable with ``codec evaluate`` on the mock.

``simulate_crosscheck(seed, index)`` returns the same keys as
:func:`astropt.data.mock.simulate_galaxy`: ``flux`` (noisy), ``truth`` and ``noise_sigma``.
"""

from __future__ import annotations

from typing import Any

import galsim
import numpy as np

from astropt.data.mock import IMAGE_SIZE, NOISE_SIGMA, PIXEL_SCALE, band_fluxes, mag_to_nanomaggies

_GSPARAMS = galsim.GSParams(maximum_fft_size=16384, folding_threshold=2e-3)
GENERATOR_VERSION = "crosscheck-spergel-1"


def _fluxes(total_r: float, rng: np.random.Generator) -> np.ndarray:
    return band_fluxes(total_r, rng.normal([0.7, 0.35, 0.2], [0.25, 0.12, 0.1]))


def _psf(gaussian: bool, fwhm: float) -> galsim.GSObject:
    if gaussian:
        return galsim.Gaussian(fwhm=fwhm, gsparams=_GSPARAMS)
    return galsim.Moffat(beta=2.0, fwhm=fwhm, trunc=6 * fwhm, gsparams=_GSPARAMS)


def draw_crosscheck_truth(
    seed: int, index: int, size: int = IMAGE_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free ``float32[4, size, size]`` (nanomaggies) and per-band sky sigma ``float32[4]``."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, index, 0x5BE6])
    slope, lo, hi = 0.35, 17.0, 22.0
    u = rng.uniform()
    mag_r = np.log10(10 ** (slope * lo) + u * (10 ** (slope * hi) - 10 ** (slope * lo))) / slope
    log_hlr = np.log10(1.8) - (mag_r - 17.0) * 0.12 + 0.2 * rng.normal()
    hlr = float(np.clip(10**log_hlr, 0.25, 3.0))
    nu = float(rng.uniform(-0.6, 2.0))
    q, angle = rng.uniform(0.25, 1.0), rng.uniform(0, 180)
    body = galsim.Spergel(nu=nu, half_light_radius=hlr, gsparams=_GSPARAMS)
    body = body.shear(q=q, beta=angle * galsim.degrees)
    total = float(mag_to_nanomaggies(mag_r))
    nucleus_fraction = rng.uniform(0.05, 0.3) if rng.uniform() < 0.2 else 0.0
    body_flux = _fluxes(total * (1 - nucleus_fraction), rng)
    nucleus_flux = _fluxes(total * nucleus_fraction, rng)
    offset = rng.uniform(-4, 4, size=2)
    fwhm_r, gaussian_psf = rng.uniform(0.9, 1.8), bool(rng.uniform() < 0.5)
    truth = np.zeros((4, size, size), dtype=np.float32)
    for band, factor in enumerate((1.06, 1.0, 0.96, 0.94)):
        scene = body.withFlux(float(body_flux[band]))
        if nucleus_fraction:
            point = galsim.DeltaFunction(flux=float(nucleus_flux[band]), gsparams=_GSPARAMS)
            scene = galsim.Add([scene, point])
        image = galsim.Convolve(scene, _psf(gaussian_psf, fwhm_r * factor))
        truth[band] = image.drawImage(nx=size, ny=size, scale=PIXEL_SCALE, offset=offset).array
    sigma = NOISE_SIGMA * rng.uniform(0.6, 1.6) * rng.uniform(0.9, 1.1, size=4)
    return truth, sigma.astype(np.float32)


def simulate_crosscheck(seed: int, index: int, size: int = IMAGE_SIZE) -> dict[str, Any]:
    truth, sigma = draw_crosscheck_truth(seed, index, size)
    noise = np.random.default_rng([seed & 0xFFFFFFFF, index, 0x9015E]).normal(size=truth.shape)
    flux = truth + (noise * sigma[:, None, None]).astype(np.float32)
    return {"flux": flux.astype(np.float32), "truth": truth, "noise_sigma": sigma}
