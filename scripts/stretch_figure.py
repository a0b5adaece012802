"""Write docs/img/stretch.png: mock galaxies, faint to bright, with the old percentile
stretch (left) and the noise-based display scale of astropt.plotting (right)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from astropy.visualization import make_lupton_rgb
from PIL import Image

from astropt.data.mock import simulate
from astropt.plotting import lupton_rgb


def percentile_stretch(flux: np.ndarray) -> np.ndarray:
    """The former look: black at zero, stretch = 99.5th percentile / 4."""
    stretch = max(float(np.percentile(flux[[3, 1, 0]].mean(axis=0), 99.5)) / 4, 1e-3)
    with np.errstate(invalid="ignore", divide="ignore"):
        return make_lupton_rgb(flux[3], flux[1], flux[0], minimum=0, stretch=stretch, Q=8)


def main(out: Path) -> None:
    pool = sorted(simulate(40, seed=777), key=lambda g: float(np.sum(g["truth"][1])))
    rows = []
    for galaxy in (pool[0], pool[10], pool[25], pool[-1]):
        crop = np.nan_to_num(np.asarray(galaxy["flux"], dtype=np.float64))[:, 32:128, 32:128]
        tiles = [percentile_stretch(crop), lupton_rgb(crop)]
        rows.append(
            np.concatenate(
                [np.pad(t[::-1], ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles],
                axis=1,
            )
        )
    grid = np.concatenate(rows, axis=0)
    image = Image.fromarray(grid).resize(
        (grid.shape[1] * 2, grid.shape[0] * 2), Image.Resampling.NEAREST
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    print(out)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img/stretch.png"))
