"""What every part of the library means by an image: a checked flux cube in canonical band
order, and the codec's own 96 x 96 centre crop (``aion``'s ``CenterCrop``: start
``(side - 96) // 2`` on both axes). Uploads, the codec, tokenising, the science tools and codec
training all crop here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from astropt.constants import CROP, DEFAULT_BANDS


def centre_crop(flux: np.ndarray, size: int = CROP) -> np.ndarray:
    """The codec's own crop: ``start = (side - size) // 2`` on both axes (a view)."""
    h, w = flux.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return flux[..., top : top + size, left : left + size]


@dataclass
class Cube:
    """A checked image: ``flux`` float32 ``[len(bands), H, W]`` in canonical DES band order."""

    flux: np.ndarray
    bands: tuple[str, ...]
    warnings: list[str] = field(default_factory=list)

    def central_crop(self) -> Cube:
        """Only what inference reads (the codec's 96x96 centre crop), in its own small array,
        so a large upload's full image can be freed as soon as it is parsed."""
        return Cube(
            np.ascontiguousarray(centre_crop(self.flux)).copy(), self.bands, list(self.warnings)
        )

    @property
    def missing_bands(self) -> tuple[str, ...]:
        return tuple(b for b in DEFAULT_BANDS if b not in self.bands)
