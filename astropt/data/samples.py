"""Raw samples: normalising flux/bands, and the leak-free train/val assignment."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MIN_IMAGE_SIZE = 96  # the AION codec crops the central 96x96 pixels
FILL_KERNEL_SIGMA_PX = 2.0  # flagged pixels are filled from neighbours within a few pixels
SPLITS = ("train", "val")


class DataSourceError(ValueError):
    """Data that cannot be found, reached or read; the message says what to do."""


def split_of(key: str, val_fraction: float) -> str:
    """``"val"`` or ``"train"`` from a stable hash of the sample's key (its object id).

    The same galaxy always lands in the same split, whatever order, batch, rank or
    process sees it, so train and val never share a galaxy.
    """
    return "val" if split_position(key) < val_fraction else "train"


def split_position(key: str) -> float:
    """Where a key falls in [0, 1): the stable hash every split of this project is cut from
    (train/val here, train/val/test in :mod:`astropt.finetune`)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")


def as_cube(array: Any, what: str) -> np.ndarray:
    """Native-endian float32 [C, H, W] (FITS data is big-endian; lists become arrays)."""
    is_plane_list = isinstance(array, Sequence) and not isinstance(array, str) and len(array) > 0
    if is_plane_list and isinstance(array[0], np.ndarray) and array[0].ndim == 2:
        array = np.stack(array)
    cube = np.asarray(array, dtype=np.float32)
    if cube.ndim != 3:
        raise DataSourceError(f"{what}: expected a [bands, H, W] cube, got shape {cube.shape}")
    return np.ascontiguousarray(cube)


def _band_names(raw: Any) -> list[str] | None:
    if raw is None:
        return None
    names = [str(b) for b in np.asarray(raw).reshape(-1)]
    return [name.upper() for name in names] or None


def select_bands(
    cube: np.ndarray, bands: list[str] | None, wanted: Sequence[str], what: str
) -> np.ndarray:
    """Reorder/select ``cube``'s bands to ``wanted`` (names compared case-insensitively)."""
    wanted = [b.upper() for b in wanted]
    if bands is None:
        if cube.shape[0] != len(wanted):
            raise DataSourceError(
                f"{what}: {cube.shape[0]} bands but no band names; expected {len(wanted)} "
                f"bands in the order {wanted}"
            )
        return cube
    if len(bands) != cube.shape[0]:
        raise DataSourceError(f"{what}: {len(bands)} band names for {cube.shape[0]} planes")
    if bands == wanted:
        return cube
    missing = [b for b in wanted if b not in bands]
    if missing:
        raise DataSourceError(
            f"{what}: bands {missing} are missing (the image has {bands}); set data.bands "
            "to the image's band names"
        )
    return cube[[bands.index(b) for b in wanted]]


def check_image_size(cube: np.ndarray, what: str) -> None:
    height, width = cube.shape[-2:]
    if min(height, width) < MIN_IMAGE_SIZE:
        raise DataSourceError(
            f"{what}: image is {height}x{width}, smaller than the codec's "
            f"{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} crop"
        )


def flagged_pixels(image: Mapping[str, Any], cube: np.ndarray, what: str) -> np.ndarray:
    """Pixels that carry no measurement: ``mask`` True, ``ivar`` <= 0, or a non-finite flux."""
    bad = ~np.isfinite(cube)
    for name, flags in (("mask", lambda a: a.astype(bool)), ("ivar", lambda a: ~(a > 0))):
        if image.get(name) is None:
            continue
        plane = np.asarray(image[name])
        if plane.shape != cube.shape:
            raise DataSourceError(
                f"{what}: '{name}' has shape {plane.shape}, flux has {cube.shape}"
            )
        bad |= flags(plane)
    return bad


def fill_flagged(cube: np.ndarray, bad: np.ndarray, what: str) -> np.ndarray:
    """Replace flagged pixels by a Gaussian-weighted mean of their unflagged neighbours.

    The codec has no notion of a missing pixel: a zero would read as empty sky (a hole in
    the galaxy) and a flagged cosmic ray as a star. Filling from the neighbours keeps the
    galaxy's light profile; pixels far from any good one take the band's median.
    """
    from astropy.convolution import Gaussian2DKernel, interpolate_replace_nans

    if not bad.any():
        return cube
    out = cube.copy()
    kernel = Gaussian2DKernel(x_stddev=FILL_KERNEL_SIGMA_PX)
    for band in np.flatnonzero(bad.reshape(len(cube), -1).any(axis=1)):
        good = ~bad[band]
        if not good.any():
            raise DataSourceError(f"{what}: band {band} has no unflagged pixel (mask/ivar)")
        plane = np.where(good, cube[band], np.nan)
        filled = interpolate_replace_nans(plane, kernel, boundary="extend")
        out[band] = np.where(np.isfinite(filled), filled, np.median(cube[band][good]))
    return out.astype(np.float32)


def sigma_from_ivar(image: Mapping[str, Any], bad: np.ndarray) -> np.ndarray | None:
    """Per-band pixel noise ``1/sqrt(median ivar)`` over unflagged pixels, if ``ivar`` is given."""
    if image.get("ivar") is None:
        return None
    ivar = np.asarray(image["ivar"], dtype=np.float64)
    sigma = [
        1.0 / np.sqrt(np.median(ivar[b][~bad[b]])) if (~bad[b]).any() else np.nan
        for b in range(len(ivar))
    ]
    return np.asarray(sigma, dtype=np.float32)


def raw_sample_from_row(
    row: Mapping[str, Any], wanted: Sequence[str], what: str, key: str | None = None
) -> dict[str, Any]:
    """A table row in the Hugging Face schema (``image`` = {flux, band, ...}) -> raw sample."""
    image = row.get("image")
    if not isinstance(image, Mapping) or image.get("flux") is None:
        raise DataSourceError(f"{what}: the 'image' column has no 'flux' field")
    bands = _band_names(image.get("band"))
    cube = as_cube(image["flux"], what)
    check_image_size(cube, what)
    bad = flagged_pixels(image, cube, what)
    flux = select_bands(fill_flagged(cube, bad, what), bands, wanted, what)
    sample: dict[str, Any] = {"flux": flux, "bands": [b.upper() for b in wanted]}
    if row.get("truth") is not None:
        sample["truth"] = select_bands(as_cube(row["truth"], what), bands, wanted, what)
    if row.get("noise_sigma") is not None:
        sigma = np.asarray(row["noise_sigma"], dtype=np.float32)
        if bands is not None and bands != [b.upper() for b in wanted]:
            sigma = sigma[[bands.index(b.upper()) for b in wanted]]
        sample["noise_sigma"] = sigma
    elif (from_ivar := sigma_from_ivar(image, bad)) is not None:
        sample["noise_sigma"] = select_bands(from_ivar[:, None, None], bands, wanted, what)[:, 0, 0]
    object_id = row.get("object_id", key)
    if object_id is not None:
        sample["object_id"] = str(object_id)
    return sample
