"""Aperture photometry of a cut-out: the no-learning baseline a linear probe must beat.

Fluxes inside circular apertures about the crop centre, per band, compressed with ``asinh``
so that ridge regression on them sees magnitudes and colours as near-linear functions.
"""

from __future__ import annotations

import numpy as np

from astropt.constants import CROP
from astropt.images import centre_crop

APERTURE_RADII_PX = (2.0, 4.0, 8.0, 16.0, 32.0)
ASINH_SOFTENING = 0.05  # nanomaggies: about the sky noise in the smallest aperture


def aperture_masks(size: int = CROP, radii: tuple[float, ...] = APERTURE_RADII_PX) -> np.ndarray:
    """Boolean ``[len(radii), size, size]``: pixels whose centres lie within each radius."""
    centre = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - centre, xx - centre)
    return np.stack([r <= radius for radius in radii])


def aperture_features(flux: np.ndarray, radii: tuple[float, ...] = APERTURE_RADII_PX) -> np.ndarray:
    """``flux`` float ``[B, bands, H, W]`` (nanomaggies) -> float32 ``[B, bands * len(radii)]``:
    ``asinh(F / softening)`` of each band's flux within each radius of the 96x96 crop centre."""
    crops = centre_crop(np.asarray(flux, dtype=np.float64))
    masks = aperture_masks(crops.shape[-1], radii).astype(np.float64)
    sums = np.einsum("bchw,ahw->bca", crops, masks)
    return np.arcsinh(sums / ASINH_SOFTENING).reshape(len(crops), -1).astype(np.float32)
