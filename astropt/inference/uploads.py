"""Turn uploaded bytes (FITS or NumPy) into a checked flux cube ``float32[bands, H, W]``.

Rules (also in ``docs/inference.md``):

- Formats are recognised by content (magic bytes), not by name: FITS (optionally
  gzip-compressed, or tile-compressed ``.fz``), ``.npy`` (optionally gzip-compressed)
  and ``.npz`` (the first array, or the array named ``flux``). Pickled objects are never
  loaded (``allow_pickle=False``).
- FITS layouts: a 3-D cube in the primary or the first image HDU, or one 2-D image HDU
  per band. Band names come from the request, else from the header (``BAND1..BANDn`` /
  ``FILTER1..FILTERn`` on a cube; ``BAND`` / ``FILTER`` / ``FILTNAM`` / ``EXTNAME`` per HDU),
  else DES-G/R/I/Z when there are exactly four bands.
- Arrays may be ``(bands, H, W)`` or ``(H, W, bands)`` (a leading batch axis of 1 is
  dropped); big-endian and integer data are converted to native float32.
- Bands: three or four distinct bands among DES-G/R/I/Z (``g``, ``des-g`` and ``DES_G``
  are accepted spellings). With three bands the cube is encoded through AION's channel
  mask over the bands present (the way AION handles band subsets); the missing band in the
  decoded images is the codec's inference, and a warning says so. Three bands must be
  named: their order cannot be guessed.
- Size: at least 96x96 (the codec's centre crop), at most ``max_side`` per side.
- NaN/inf: set to 0 with a warning, unless more than ``max_nonfinite_fraction`` of the
  central 96x96 crop of any band is non-finite (then rejected).
- Decompression bombs: a gzip file's inflated size is counted first, without keeping the
  output, and refused past ``max_decompressed_bytes``; one that fits is inflated only once it
  has reserved its size in the process-wide budget ``max_inflating_bytes`` (see
  ``inflate.py``). FITS (incl. tile-compressed) and ``.npy``/``.npz`` sizes are checked from
  their headers before any data is read.

Every problem raises :class:`InputError` naming its kind: ``too_large``, ``unsupported`` (not a
supported format) or ``invalid`` (a supported format with unusable content).
"""

from __future__ import annotations

import io
import math
import zipfile
import zlib
from collections.abc import Sequence

import numpy as np

from astropt.constants import DEFAULT_BANDS
from astropt.images import Cube
from astropt.inference.inflate import gunzip_limited, inflated, process_budget
from astropt.inference.limits import (
    MIN_SIDE,
    InputError,
    UploadLimits,
    normalise_band,
    parse_bands,
)
from astropt.inference.upload_fits import read_fits

FITS_MAGIC = b"SIMPLE  ="
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"
SUPPORTED_SUFFIXES = (
    ".fits",
    ".fit",
    ".fts",
    ".fits.gz",
    ".fit.gz",
    ".fz",
    ".npy",
    ".npy.gz",
    ".npz",
)
__all__ = [
    "InputError",
    "UploadLimits",
    "gunzip_limited",
    "normalise_band",
    "parse_bands",
    "parse_upload",
]


def parse_upload(
    data: bytes,
    filename: str = "",
    bands: str | Sequence[str] | None = None,
    limits: UploadLimits | None = None,
) -> Cube:
    """Parse one uploaded file into a :class:`Cube` (see the module doc for the rules)."""
    limits = limits or UploadLimits()
    requested = parse_bands(bands)
    if len(data) > limits.max_upload_bytes:
        raise InputError(
            "too_large", f"upload is {len(data)} bytes; the limit is {limits.max_upload_bytes}"
        )
    if not data:
        raise InputError("invalid", f"the uploaded file {filename!r} is empty")
    if data.startswith(GZIP_MAGIC):
        budget = process_budget(limits.max_inflating_bytes)
        with inflated(data, limits.max_decompressed_bytes, budget, limits.inflate_wait_s) as plain:
            if plain.startswith(GZIP_MAGIC):
                raise InputError("invalid", "nested gzip compression is not accepted")
            return _parse_plain(plain, filename, requested, limits)
    return _parse_plain(data, filename, requested, limits)


def _parse_plain(
    data: bytes, filename: str, requested: tuple[str, ...] | None, limits: UploadLimits
) -> Cube:
    notes: list[str] = []
    if data.startswith(FITS_MAGIC):
        array, header_bands = read_fits(data, requested, limits, notes)
    elif data.startswith(NPY_MAGIC):
        array, header_bands = _read_npy(io.BytesIO(data), limits), None
    elif data.startswith(ZIP_MAGIC):
        array, header_bands = _read_npz(data, limits, notes), None
    else:
        raise _unrecognised(filename)
    return _finalise(array, requested or header_bands, limits, notes)


def _unrecognised(filename: str) -> InputError:
    name = filename.lower()
    if name.endswith(SUPPORTED_SUFFIXES):
        return InputError(
            "invalid",
            f"{filename!r} is named like a supported file but its content is not valid "
            "FITS, NumPy .npy/.npz or gzip: the file is corrupt or truncated",
        )
    return InputError(
        "unsupported",
        f"unsupported file type {filename!r}: send FITS (.fits, .fits.gz, .fz) or "
        "NumPy (.npy, .npz) holding a flux cube in nanomaggies",
    )


def _read_npy(stream: io.BytesIO | zipfile.ZipExtFile, limits: UploadLimits) -> np.ndarray:
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = npformat.read_array_header_1_0(stream)
        else:
            shape, _, dtype = npformat.read_array_header_2_0(stream)
    except ValueError as exc:
        raise InputError("invalid", f"corrupt .npy header: {exc}") from exc
    if dtype.hasobject:
        raise InputError(
            "invalid", "the array holds Python objects; send a numeric array (no pickles)"
        )
    if math.prod(shape) * max(dtype.itemsize, 1) > limits.max_decompressed_bytes:
        raise InputError("too_large", f"the array {shape} of {dtype} exceeds the memory limit")
    if hasattr(stream, "seek"):
        stream.seek(0)
    try:
        return np.load(stream, allow_pickle=False)
    except ValueError as exc:
        raise InputError("invalid", f"cannot read the .npy array: {exc}") from exc
    except OSError as exc:
        raise InputError("invalid", f"the .npy file is truncated or corrupt: {exc}") from exc


def _read_npz(data: bytes, limits: UploadLimits, notes: list[str]) -> np.ndarray:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if m.filename.endswith(".npy")]
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError("invalid", f"corrupt .npz archive: {exc}") from exc
    if not members:
        raise InputError("invalid", "the .npz archive holds no arrays")
    chosen = next((m for m in members if m.filename == "flux.npy"), members[0])
    if chosen.file_size > limits.max_decompressed_bytes:
        raise InputError(
            "too_large", f"array {chosen.filename!r} inflates to {chosen.file_size} bytes"
        )
    if len(members) > 1:
        notes.append(f"used array {chosen.filename[:-4]!r} of the .npz archive")
    try:
        raw = archive.read(chosen)  # zipfile stops at the declared size and checks the CRC
    except (zipfile.BadZipFile, zlib.error, OSError, NotImplementedError) as exc:
        raise InputError("invalid", f"corrupt .npz member {chosen.filename!r}: {exc}") from exc
    return _read_npy(io.BytesIO(raw), limits)


def _finalise(
    array: np.ndarray, bands: tuple[str, ...] | None, limits: UploadLimits, notes: list[str]
) -> Cube:
    if array.dtype.kind not in "iuf":
        raise InputError("invalid", f"pixel data must be integers or floats, not {array.dtype}")
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        raise InputError(
            "invalid", "a 2-D array is one band; send (bands, H, W) or (H, W, bands) with 3-4 bands"
        )
    if array.ndim != 3:
        raise InputError(
            "invalid",
            f"expected a 3-D flux cube (bands, H, W) or (H, W, bands), got shape {array.shape}",
        )
    array = _bands_first(array)
    if not 3 <= array.shape[0] <= 4:
        raise InputError(
            "invalid",
            f"the cube has {array.shape[0]} bands; send 3 or 4 of g, r, i, z (shape {array.shape})",
        )
    bands = _check_bands(bands, array.shape[0])
    _check_size(array.shape[1:], limits)
    flux = np.ascontiguousarray(array, dtype=np.float32)
    _mask_nonfinite(flux, bands, limits, notes)
    order = sorted(range(len(bands)), key=lambda i: DEFAULT_BANDS.index(bands[i]))
    cube = Cube(np.ascontiguousarray(flux[order]), tuple(bands[i] for i in order), notes)
    for band in cube.missing_bands:
        notes.append(
            f"band {band} is missing: the image was encoded over the {len(cube.bands)} given "
            f"bands (AION channel mask); the decoded {band} is inferred by the codec"
        )
    return cube


def _bands_first(array: np.ndarray) -> np.ndarray:
    first, last = array.shape[0], array.shape[-1]
    # The band axis is the short one: images are at least MIN_SIDE pixels per side.
    if first < MIN_SIDE <= last:
        return array
    if last < MIN_SIDE <= first:
        return np.moveaxis(array, -1, 0)
    if first < MIN_SIDE and last < MIN_SIDE:
        raise InputError(
            "invalid",
            f"images must be at least {MIN_SIDE}x{MIN_SIDE} pixels (the codec's centre crop); "
            f"got shape {array.shape}",
        )
    raise InputError(
        "invalid",
        f"cannot tell which axis holds the bands in shape {array.shape}: expected "
        "(bands, H, W) or (H, W, bands) with 3 or 4 bands",
    )


def _check_bands(bands: tuple[str, ...] | None, n: int) -> tuple[str, ...]:
    if bands is None:
        if n == len(DEFAULT_BANDS):
            return DEFAULT_BANDS
        raise InputError(
            "invalid",
            f"the cube has {n} bands but none are named; pass bands=... (e.g. 'g,r,z') or "
            "name them in the FITS header (BAND1..BANDn)",
        )
    if len(bands) != n:
        raise InputError(
            "invalid", f"{len(bands)} band names ({', '.join(bands)}) for a cube of {n} bands"
        )
    if len(set(bands)) != n:
        raise InputError("invalid", f"band names repeat: {', '.join(bands)}")
    return bands


def _check_size(hw: tuple[int, ...], limits: UploadLimits) -> None:
    h, w = hw
    if h < MIN_SIDE or w < MIN_SIDE:
        raise InputError(
            "invalid",
            f"images must be at least {MIN_SIDE}x{MIN_SIDE} pixels (the codec's centre "
            f"crop); got {h}x{w}",
        )
    if h > limits.max_side or w > limits.max_side:
        raise InputError(
            "too_large", f"images may be at most {limits.max_side} pixels per side; got {h}x{w}"
        )


def _mask_nonfinite(
    flux: np.ndarray, bands: tuple[str, ...], limits: UploadLimits, notes: list[str]
) -> None:
    bad = ~np.isfinite(flux)
    n_bad = int(bad.sum())
    if not n_bad:
        return
    h, w = flux.shape[1:]
    top, left = (h - MIN_SIDE) // 2, (w - MIN_SIDE) // 2
    centre = bad[:, top : top + MIN_SIDE, left : left + MIN_SIDE].mean(axis=(1, 2))
    worst = int(np.argmax(centre))
    if centre[worst] > limits.max_nonfinite_fraction:
        raise InputError(
            "invalid",
            f"{centre[worst]:.0%} of the central {MIN_SIDE}x{MIN_SIDE} pixels of band "
            f"{bands[worst]} are NaN/inf (limit {limits.max_nonfinite_fraction:.0%})",
        )
    flux[bad] = 0.0
    notes.append(f"{n_bad} NaN/inf pixel(s) were set to 0")
