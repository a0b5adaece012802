"""Columns derived from a source's scalar columns (magnitudes and colours from fluxes)."""

from __future__ import annotations

import numpy as np

from astropt.data.mock import nanomaggies_to_mag


def derived_columns(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """AB magnitudes ``mag_<b>`` from ``flux_<b>`` (nanomaggies) and the colours between
    neighbouring bands (``g_r`` = mag_g - mag_r, ...), where the source has the fluxes."""
    out: dict[str, np.ndarray] = {}
    for band in "griz":
        flux = columns.get(f"flux_{band}")
        if flux is not None and f"mag_{band}" not in columns:
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"mag_{band}"] = np.where(
                    flux > 0, nanomaggies_to_mag(np.maximum(flux, 1e-30)), np.nan
                )
    mags = {b: columns.get(f"mag_{b}", out.get(f"mag_{b}")) for b in "griz"}
    for a, b in zip("gri", "riz", strict=True):
        mag_a, mag_b = mags[a], mags[b]
        if mag_a is not None and mag_b is not None and f"{a}_{b}" not in columns:
            out[f"{a}_{b}"] = mag_a - mag_b
    return out
