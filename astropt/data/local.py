"""Local files: FITS / ``.npy`` cubes, and Parquet / Arrow tables in the Hugging Face schema."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from astropt.data.samples import (
    DataSourceError,
    as_cube,
    check_image_size,
    fill_flagged,
    select_bands,
)

CUBE_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fit.gz", ".fz", ".npy")
TABLE_SUFFIXES = (".parquet", ".arrow")
VALIDATE_AT_OPEN = 2000  # cube files checked up front; beyond this, checked when read


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(CUBE_SUFFIXES):
        return "cube"
    if name.endswith(TABLE_SUFFIXES):
        return "table"
    return None


def discover(path: str | Path) -> tuple[str, list[Path]]:
    """``("cube" | "table", files)`` under a file or directory (searched recursively)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DataSourceError(f"data path does not exist: {root}")
    candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    candidates = [p for p in candidates if not any(part.startswith(".") for part in p.parts[-1:])]
    by_kind: dict[str, list[Path]] = {"cube": [], "table": []}
    for file in candidates:
        kind = _kind(file)
        if kind:
            by_kind[kind].append(file)
    if by_kind["cube"] and by_kind["table"]:
        raise DataSourceError(
            f"{root} mixes image files (FITS/.npy) and tables (Parquet/Arrow); "
            "point data.path at one kind"
        )
    for kind in ("table", "cube"):
        if by_kind[kind]:
            return kind, by_kind[kind]
    raise DataSourceError(
        f"no data files in {root}: expected FITS (.fits, .fits.gz), .npy cubes [4, H, W], "
        "or Parquet/Arrow files with an 'image' column"
    )


# -- FITS / npy cubes -------------------------------------------------------------------


def _fits_cube(path: Path) -> np.ndarray:
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdus:
            for hdu in hdus:
                if getattr(hdu, "data", None) is not None and hdu.data.ndim >= 2:
                    return np.asarray(hdu.data, dtype=np.float32)  # also fixes big-endian
    except OSError as exc:
        raise DataSourceError(f"{path}: not a readable FITS file ({exc})") from exc
    raise DataSourceError(f"{path}: no image data in the primary or any image HDU")


def _fits_shape(path: Path) -> tuple[int, ...]:
    from astropy.io import fits

    try:
        with fits.open(path, memmap=True) as hdus:
            for hdu in hdus:
                naxis = hdu.header.get("NAXIS", 0)
                if hdu.is_image and naxis >= 2:
                    return tuple(hdu.header[f"NAXIS{i}"] for i in range(naxis, 0, -1))
    except OSError as exc:
        raise DataSourceError(f"{path}: not a readable FITS file ({exc})") from exc
    raise DataSourceError(f"{path}: no image data in the primary or any image HDU")


def _npy_shape(path: Path) -> tuple[int, ...]:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False).shape
    except (OSError, ValueError) as exc:
        raise DataSourceError(f"{path}: not a readable .npy array ({exc})") from exc


def _check_cube_shape(path: Path, shape: tuple[int, ...], n_bands: int) -> None:
    if len(shape) != 3 or shape[0] != n_bands:
        raise DataSourceError(
            f"{path}: image has shape {list(shape)}, expected [{n_bands}, H, W] "
            f"(one galaxy, bands first)"
        )
    check_image_size(np.empty((0, *shape[1:])), str(path))


class CubeFiles:
    """One galaxy per FITS/``.npy`` file; the object id is the path relative to the root."""

    def __init__(self, root: Path, files: list[Path], bands: Sequence[str]) -> None:
        self.root = root if root.is_dir() else root.parent
        self.files = files
        self.bands = list(bands)
        for file in files[:VALIDATE_AT_OPEN]:
            shape = _npy_shape(file) if file.suffix == ".npy" else _fits_shape(file)
            _check_cube_shape(file, shape, len(self.bands))

    def __len__(self) -> int:
        return len(self.files)

    def keys(self) -> list[str]:
        return [file.relative_to(self.root).as_posix() for file in self.files]

    def sample(self, index: int) -> dict[str, Any]:
        file = self.files[index]
        data = np.load(file, allow_pickle=False) if file.suffix == ".npy" else _fits_cube(file)
        _check_cube_shape(file, data.shape, len(self.bands))
        cube = select_bands(as_cube(data, str(file)), None, self.bands, str(file))
        return {
            "flux": fill_flagged(cube, ~np.isfinite(cube), str(file)),  # NaN = no measurement
            "bands": [b.upper() for b in self.bands],
            "object_id": file.relative_to(self.root).as_posix(),
        }


# -- Parquet / Arrow tables -------------------------------------------------------------


def _arrow_schema_and_rows(path: Path) -> tuple[Any, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.name.lower().endswith(".parquet"):
            meta = pq.ParquetFile(path).metadata
            return meta.schema.to_arrow_schema(), meta.num_rows
        with pa.memory_map(str(path)) as source:
            try:
                table = pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                table = pa.ipc.open_file(source).read_all()
            return table.schema, table.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise DataSourceError(f"{path}: not a readable Parquet/Arrow file ({exc})") from exc


def _flux_field(arrow_type: Any) -> bool:
    import pyarrow as pa

    if isinstance(arrow_type, pa.ExtensionType):
        arrow_type = arrow_type.storage_type
    return pa.types.is_struct(arrow_type) and arrow_type.get_field_index("flux") >= 0


def check_table_files(files: list[Path], image_column: str) -> tuple[str, list[int]]:
    """Validate every file's schema up front; return the image column and row counts."""
    columns_seen: set[str] = set()
    rows: list[int] = []
    for file in files:
        schema, n_rows = _arrow_schema_and_rows(file)
        names = set(schema.names)
        column = image_column if image_column in names else "image"
        if column not in names:
            raise DataSourceError(
                f"{file}: no image column (looked for {image_column!r} and 'image'; the file "
                f"has {sorted(names)}); set data.image_column to the column holding the images"
            )
        if not _flux_field(schema.field(column).type):
            raise DataSourceError(
                f"{file}: column {column!r} has no 'flux' field (type "
                f"{schema.field(column).type}); expected a struct with flux [4, H, W] and band"
            )
        columns_seen.add(column)
        rows.append(n_rows)
    if len(columns_seen) > 1:
        raise DataSourceError(f"files disagree on the image column: {sorted(columns_seen)}")
    return columns_seen.pop(), rows
