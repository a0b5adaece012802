"""A catalogue's thumbnail map in the service layer: the sheet (PNG) and its layout (JSON).

The sheet is drawn once per (map method, grid, tile) and kept beside the cut-outs in the
catalogue directory; the layout lists every object's map position (for hover and click) and
which object each cell shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from service.catalogues.galaxies import images_of, object_links
from service.catalogues.service import Loaded, load, map_xy
from state.settings import Settings


def _cells(
    settings: Settings, loaded: Loaded, method: str, grid: int
) -> tuple[np.ndarray, tuple, list]:
    from astropt.science.thumbnail_map import extent, thumbnail_cells

    xy = map_xy(settings, loaded, method)
    box = extent(xy)
    return xy, box, thumbnail_cells(xy, grid, box)


def layout(
    settings: Settings, path: Path, job_id: str, method: str, grid: int, tile: int
) -> dict[str, Any]:
    """JSON: the extent, the cells (``i``, ``j``, object id) and every object's position."""
    loaded = load(path)
    xy, box, cells = _cells(settings, loaded, method, grid)
    ids = loaded.index.object_ids
    query = f"method={method}&grid={grid}&tile={tile}"
    return {
        "job_id": job_id,
        "method": method,
        "grid": grid,
        "tile": tile,
        "extent": {"xmin": box[0], "xmax": box[1], "ymin": box[2], "ymax": box[3]},
        "sheet": f"/catalogues/{job_id}/thumbnails.png?{query}",
        "cells": [
            {
                "i": c.i,
                "j": c.j,
                "object_id": str(ids[c.row]),
                "cutout": object_links(job_id, str(ids[c.row]))[0],
            }
            for c in cells
        ],
        "points": {
            "object_id": [str(o) for o in ids],
            "x": np.round(xy[:, 0], 5).tolist(),
            "y": np.round(xy[:, 1], 5).tolist(),
        },
    }


def sheet(settings: Settings, path: Path, method: str, grid: int, tile: int) -> bytes:
    """The PNG, from the catalogue directory's cache or drawn now; a galaxy whose image cannot be
    read back leaves its cell dark."""
    from astropt.science.cutouts import CUTOUT_DIR, ImageUnavailable, cutout_rgb, write_bytes
    from astropt.science.thumbnail_map import thumbnail_sheet

    cached = path / CUTOUT_DIR / f"thumbnails-{method}-{grid}-{tile}.png"
    try:
        return cached.read_bytes()
    except OSError:
        pass
    loaded = load(path)
    _, _, cells = _cells(settings, loaded, method, grid)
    ids = loaded.index.object_ids

    def rgb_of(row: int) -> np.ndarray | None:
        try:
            return cutout_rgb(images_of(loaded).image(row, str(ids[row])).flux)  # type: ignore[attr-defined]
        except ImageUnavailable:
            return None

    png = thumbnail_sheet(cells, grid, tile, rgb_of)
    write_bytes(cached, png)
    return png
