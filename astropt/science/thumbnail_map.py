"""A thumbnail map: galaxies drawn at their 2-D map positions, one per grid cell.

The map's extent is cut into ``grid x grid`` cells; each cell with objects in it shows the one
nearest its centre (the embedding-space pictures of the AstroPT and AION papers). The sheet is
exactly the extent: cell ``(i, j)`` (x to the right, y up) is the square at column ``i`` and
row ``grid - 1 - j`` of the image, so a viewer can lay it under the points.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MAX_GRID = 32
MAX_TILE = 96


@dataclass(frozen=True)
class Cell:
    i: int  # column, x to the right
    j: int  # row, y up
    row: int  # the catalogue row shown


def extent(xy: np.ndarray, pad: float = 0.02) -> tuple[float, float, float, float]:
    """(xmin, xmax, ymin, ymax) of the finite points, a little padded; a square never of zero size."""
    finite = xy[np.isfinite(xy).all(axis=1)]
    if len(finite) == 0:
        return -1.0, 1.0, -1.0, 1.0
    lo, hi = finite.min(axis=0), finite.max(axis=0)
    span = np.maximum(hi - lo, 1e-9)
    lo, hi = lo - pad * span, hi + pad * span
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


def thumbnail_cells(
    xy: np.ndarray, grid: int, box: tuple[float, float, float, float] | None = None
) -> list[Cell]:
    """For every non-empty cell of a ``grid x grid`` cut of ``box`` (default: :func:`extent`),
    the object nearest the cell's centre."""
    if not 1 <= grid <= MAX_GRID:
        raise ValueError(f"grid must be in [1, {MAX_GRID}], got {grid}")
    xmin, xmax, ymin, ymax = box or extent(xy)
    finite = np.flatnonzero(np.isfinite(xy).all(axis=1))
    u = (xy[finite, 0] - xmin) / (xmax - xmin) * grid
    v = (xy[finite, 1] - ymin) / (ymax - ymin) * grid
    i, j = np.clip(u.astype(int), 0, grid - 1), np.clip(v.astype(int), 0, grid - 1)
    distance = (u - (i + 0.5)) ** 2 + (v - (j + 0.5)) ** 2
    best: dict[tuple[int, int], tuple[float, int]] = {}
    for ci, cj, d, row in zip(
        i.tolist(), j.tolist(), distance.tolist(), finite.tolist(), strict=True
    ):
        if (ci, cj) not in best or d < best[(ci, cj)][0]:
            best[(ci, cj)] = (d, row)
    return [Cell(ci, cj, row) for (ci, cj), (_, row) in sorted(best.items())]


def thumbnail_sheet(
    cells: list[Cell], grid: int, tile: int, rgb_of: Callable[[int], np.ndarray | None]
) -> bytes:
    """PNG of ``grid * tile`` px square: each cell's galaxy (``rgb_of(row)``: ``uint8 [H, W, 3]``,
    None: left dark) resized to ``tile`` px; empty cells dark."""
    from PIL import Image

    if not 4 <= tile <= MAX_TILE:
        raise ValueError(f"tile must be in [4, {MAX_TILE}] px, got {tile}")
    sheet = Image.new("RGB", (grid * tile, grid * tile), (12, 14, 18))
    for cell in cells:
        rgb = rgb_of(cell.row)
        if rgb is None:
            continue
        thumb = Image.fromarray(rgb).resize((tile, tile), Image.Resampling.BILINEAR)
        sheet.paste(thumb, (cell.i * tile, (grid - 1 - cell.j) * tile))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()
