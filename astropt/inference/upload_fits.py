"""FITS uploads: a cube in one image HDU, or one 2-D image HDU per band (see uploads.py)."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np

from astropt.inference.limits import InputError, UploadLimits, normalise_band, parse_bands

_HDU_BAND_KEYS = ("BAND", "FILTER", "FILTNAM")


def read_fits(
    data: bytes, requested: tuple[str, ...] | None, limits: UploadLimits, notes: list[str]
) -> tuple[np.ndarray, tuple[str, ...] | None]:
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdul = fits.open(io.BytesIO(data), memmap=False, lazy_load_hdus=True)
            hdus = []
            for index, hdu in enumerate(hdul):
                if index >= limits.max_hdus:
                    raise InputError(
                        "invalid", f"the FITS file has more than {limits.max_hdus} HDUs"
                    )
                hdus.append(hdu)
            images = [(i, h, _squeezed_shape(h)) for i, h in enumerate(hdus) if _is_image(h)]
            images = [(i, h, s) for i, h, s in images if s]
            try:
                return _fits_layout(images, requested, limits, notes)
            finally:
                hdul.close()
    except InputError:
        raise
    except Exception as exc:  # astropy raises many types for malformed files
        raise InputError(
            "invalid", f"cannot read the FITS file: {type(exc).__name__}: {exc}"
        ) from exc


def _is_image(hdu: object) -> bool:
    from astropy.io import fits

    return isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU)


def _squeezed_shape(hdu) -> tuple[int, ...]:
    header = hdu.header
    naxis = int(header.get("NAXIS", 0))
    shape = tuple(int(header.get(f"NAXIS{k}", 0)) for k in range(naxis, 0, -1))
    if not shape or 0 in shape:
        return ()
    return tuple(n for n in shape if n != 1) or ()


def _check_declared_size(shapes: list[tuple[int, ...]], limits: UploadLimits) -> None:
    total = sum(math.prod(s) for s in shapes) * 8  # decoded as up to 64-bit values
    if total > limits.max_decompressed_bytes:
        raise InputError(
            "too_large",
            f"the image data would take {total} bytes in memory; the limit is "
            f"{limits.max_decompressed_bytes}",
        )


def _fits_layout(images, requested, limits: UploadLimits, notes: list[str]):
    cubes = [(i, h, s) for i, h, s in images if len(s) == 3]
    planes = [(i, h, s) for i, h, s in images if len(s) == 2]
    if cubes:
        index, hdu, shape = cubes[0]
        _check_declared_size([shape], limits)
        if len(images) > 1:
            notes.append(f"used the image cube in HDU {index}; other image HDUs were ignored")
        array = np.asarray(hdu.data).reshape(shape)
        return array, requested or _cube_header_bands(hdu.header, shape)
    if len(planes) == 1:
        raise InputError(
            "invalid",
            "the FITS file holds a single 2-D image (one band); send a cube "
            "(bands, H, W) or one image HDU per band, with at least 3 of g, r, i, z",
        )
    if not planes:
        raise InputError("invalid", "the FITS file holds no image data (no 2-D or 3-D image HDU)")
    if len({s for _, _, s in planes}) > 1:
        sizes = ", ".join(f"HDU {i}: {s[0]}x{s[1]}" for i, _, s in planes)
        raise InputError("invalid", f"the per-band image HDUs differ in size ({sizes})")
    _check_declared_size([s for _, _, s in planes], limits)
    array = np.stack([np.asarray(h.data).reshape(s) for _, h, s in planes])
    return array, requested or _plane_header_bands(planes)


def _cube_header_bands(header, shape: tuple[int, ...]) -> tuple[str, ...] | None:
    n = min(shape[0], shape[-1])
    for key in ("BAND", "FILTER"):
        names = [header.get(f"{key}{k}") for k in range(1, n + 1)]
        if all(isinstance(x, str) and x.strip() for x in names):
            return tuple(_header_band(x) for x in names)
    listed = header.get("BANDS")
    if isinstance(listed, str) and listed.strip():
        return parse_bands(listed)
    return None


def _plane_header_bands(planes) -> tuple[str, ...] | None:
    names: list[str | None] = []
    for _, hdu, _ in planes:
        found = next(
            (hdu.header[k] for k in _HDU_BAND_KEYS if isinstance(hdu.header.get(k), str)), None
        )
        if found is None and isinstance(hdu.header.get("EXTNAME"), str):
            try:
                found = normalise_band(hdu.header["EXTNAME"])
            except InputError:
                found = None
        names.append(found)
    if all(n is None for n in names):
        return None
    unnamed = [i for (i, _, _), n in zip(planes, names, strict=True) if n is None]
    if unnamed:
        raise InputError(
            "invalid",
            f"image HDU(s) {unnamed} have no BAND/FILTER/EXTNAME naming their band; "
            "name every band in the file or pass bands=... with the request",
        )
    return tuple(_header_band(str(n)) for n in names)


def _header_band(value: str) -> str:
    """Header values such as ``'g DECam SDSS c0001 4720.0 1520.0'``: try the whole, then the first word."""
    try:
        return normalise_band(value)
    except InputError:
        first = value.strip().split()[0] if value.strip() else value
        return normalise_band(first)
