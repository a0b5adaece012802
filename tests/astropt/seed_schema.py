"""Parquet files in the seed data set's schema (see /work/shared/REFERENCE.md, docs/data.md).

``legacysurvey_image`` is a struct with lower-case ``band`` names, ``flux`` [4, H, W]
(nanomaggies), ``ivar`` (inverse variance, same shape), ``mask`` (bool, same shape; True =
a flagged pixel), and per-band ``psf_fwhm`` and ``scale``; ``object_id`` names the galaxy.
The pixels are the project's GalSim mock galaxies.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from astropt.data import IMAGE_SIZE, PIXEL_SCALE, simulate_galaxy

SEED_BANDS = ["des-g", "des-r", "des-i", "des-z"]
IMAGE_COLUMN = "legacysurvey_image"


def seed_features(size: int = IMAGE_SIZE) -> Any:
    from datasets import Array3D, Features, Sequence, Value

    return Features(
        {
            IMAGE_COLUMN: {
                "band": Sequence(Value("string")),
                "flux": Array3D(shape=(4, size, size), dtype="float32"),
                "ivar": Array3D(shape=(4, size, size), dtype="float32"),
                "mask": Array3D(shape=(4, size, size), dtype="bool"),
                "psf_fwhm": Sequence(Value("float32")),
                "scale": Sequence(Value("float32")),
            },
            "object_id": Value("string"),
        }
    )


def seed_row(
    index: int, seed: int = 0, damage: Callable[[dict[str, np.ndarray]], None] | None = None
) -> dict[str, Any]:
    galaxy = simulate_galaxy(seed, index)
    image = {
        "band": SEED_BANDS,
        "flux": galaxy["flux"].astype(np.float32),
        "ivar": np.broadcast_to(
            (1.0 / galaxy["noise_sigma"] ** 2)[:, None, None], galaxy["flux"].shape
        ).astype(np.float32),
        "mask": np.zeros(galaxy["flux"].shape, dtype=bool),
        "psf_fwhm": [galaxy["params"][f"psf_fwhm_{b}"] for b in "griz"],
        "scale": [PIXEL_SCALE] * 4,
    }
    if damage is not None:
        damage(image)
    return {IMAGE_COLUMN: image, "object_id": galaxy["object_id"]}


def write_seed_parquet(
    path: Path,
    n: int,
    seed: int = 0,
    start: int = 0,
    damage: Callable[[dict[str, np.ndarray]], None] | None = None,
    columns: dict[str, Callable[[dict[str, Any]], Any]] | None = None,
) -> Path:
    """``n`` galaxies (``start``..) as one Parquet file in the seed schema; returns ``path``.
    ``columns``: more scalar columns, each computed from the galaxy's mock parameters
    (numbers become float64 columns, anything else strings)."""
    from datasets import Dataset, Value

    features = seed_features()
    rows = [seed_row(start + i, seed, damage) for i in range(n)]
    for name, compute in (columns or {}).items():
        values = [compute(simulate_galaxy(seed, start + i)["params"]) for i in range(n)]
        numeric = all(isinstance(v, int | float) for v in values)
        features[name] = Value("float64" if numeric else "string")
        for row, value in zip(rows, values, strict=True):
            row[name] = float(value) if numeric else str(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows, features=features).to_parquet(str(path))
    return path
