"""The embedding catalogue on disk: ``catalogue.parquet`` + ``manifest.json`` in one directory.

The Parquet file has ``object_id`` (string), ``embedding`` (fixed-size list of float32),
optionally ``aperture_flux`` (fixed-size list of float32, the photometry baseline) and the
source's scalar columns. The manifest says what made it (model, checkpoint, codec, data
source, pooling, layer) and how many rows it has.

A catalogue is written into a hidden sibling directory and renamed into place only when both
files are complete, so a directory with a manifest is always a whole catalogue.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CATALOGUE_FILE = "catalogue.parquet"
MANIFEST_FILE = "manifest.json"
FORMAT = "astropt-catalogue"
FORMAT_VERSION = 1
VECTOR_COLUMNS = ("embedding", "aperture_flux")


class CatalogueError(ValueError):
    """Not a (complete) catalogue, or one that does not fit the request."""


@dataclass
class Catalogue:
    object_ids: np.ndarray  # str [N]
    embeddings: np.ndarray  # float32 [N, D]
    columns: dict[str, np.ndarray]  # scalar columns and other vector columns, row-aligned
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return len(self.object_ids)

    def features(self, name: str = "embedding") -> np.ndarray:
        if name == "embedding":
            return self.embeddings
        if name not in self.columns or self.columns[name].ndim != 2:
            raise CatalogueError(f"the catalogue has no vector column {name!r}")
        return self.columns[name]

    def label(self, name: str) -> np.ndarray:
        values = self.columns.get(name)
        if values is None or values.ndim != 1 or values.dtype.kind not in "iufb":
            numeric = sorted(
                k for k, v in self.columns.items() if v.ndim == 1 and v.dtype.kind in "iufb"
            )
            raise CatalogueError(
                f"no numeric column {name!r}; the catalogue has {', '.join(numeric)}"
            )
        return values.astype(np.float64)

    def is_categorical(self, name: str) -> bool:
        """Text and boolean columns are classes (a logistic probe); numbers are regressed."""
        values = self.columns.get(name)
        return values is not None and values.ndim == 1 and values.dtype.kind in "USOb"

    def classes(self, name: str) -> np.ndarray:
        """``str [N]``: a column's values as class names, ``""`` where the object has none
        (numbers too, when the caller says they name classes: integer codes, say)."""
        values = self.columns.get(name)
        if values is None or values.ndim != 1:
            scalar = sorted(k for k, v in self.columns.items() if v.ndim == 1)
            raise CatalogueError(f"no column {name!r}; the catalogue has {', '.join(scalar)}")
        if values.dtype.kind == "f":
            whole = np.isfinite(values) & (values == np.round(values))
            if not whole[np.isfinite(values)].all():
                raise CatalogueError(
                    f"column {name!r} has non-integer values: it cannot name classes"
                )
            return np.where(
                np.isfinite(values), np.nan_to_num(values).astype(np.int64).astype(str), ""
            )
        return np.array(["" if v is None else str(v) for v in values.tolist()], dtype=str)


def _vector_array(values: np.ndarray) -> Any:
    import pyarrow as pa

    values = np.ascontiguousarray(values, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def write_parquet(
    path: Path,
    object_ids: list[str],
    vectors: dict[str, np.ndarray],
    columns: dict[str, np.ndarray],
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {"object_id": pa.array(object_ids, pa.string())}
    arrays.update({name: _vector_array(v) for name, v in vectors.items()})
    for name, values in columns.items():
        if name not in arrays:
            arrays[name] = pa.array(values)
    pq.write_table(pa.table(arrays), str(path), compression="zstd")


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    path = Path(directory) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None


def read_catalogue(directory: str | Path) -> Catalogue:
    """A complete catalogue (its manifest's count checked against the Parquet file)."""
    import pyarrow.parquet as pq

    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None:
        raise CatalogueError(f"{directory} is not a complete catalogue (no valid {MANIFEST_FILE})")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise CatalogueError(
            f"{directory}: catalogue format {manifest['format_version']} is newer than this astropt"
        )
    table = pq.read_table(directory / CATALOGUE_FILE)
    if table.num_rows != manifest.get("count"):
        raise CatalogueError(
            f"{directory}: {table.num_rows} rows but the manifest says {manifest.get('count')}"
        )
    columns: dict[str, np.ndarray] = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if name in VECTOR_COLUMNS:
            width = column.type.list_size
            columns[name] = column.flatten().to_numpy().astype(np.float32).reshape(-1, width)
        else:
            columns[name] = np.asarray(column.to_numpy(zero_copy_only=False))
    ids = columns.pop("object_id").astype(str)
    embeddings = columns.pop("embedding")
    return Catalogue(ids, embeddings, columns, manifest)


def check_target(target: str | Path) -> Path:
    """``target`` resolved; refuses a non-empty ``target`` that is not a catalogue, so nothing
    else is overwritten."""
    target = Path(target).expanduser().resolve()
    if target.exists() and (
        not target.is_dir() or (any(target.iterdir()) and read_manifest(target) is None)
    ):
        raise CatalogueError(
            f"{target} exists and is not a catalogue; choose a new or empty directory"
        )
    return target


@contextmanager
def staged_directory(target: str | Path) -> Iterator[Path]:
    """A hidden temporary sibling of ``target``, renamed to ``target`` when the block ends
    without error (an older catalogue there is replaced) and deleted otherwise.

    Refuses a non-empty ``target`` that is not a catalogue (:func:`check_target`).
    """
    target = check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield staging
        staging.chmod(0o755)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}
    path = directory / MANIFEST_FILE
    path.write_text(json.dumps(full, indent=2, sort_keys=True, default=str))


def write_catalogue(
    out_dir: str | Path,
    object_ids: list[str],
    embeddings: np.ndarray,
    columns: dict[str, np.ndarray] | None = None,
    manifest: dict[str, Any] | None = None,
    aperture_flux: np.ndarray | None = None,
) -> Path:
    """Write a complete catalogue directory atomically (also for embeddings made elsewhere).

    ``count`` and ``embedding_dim`` in the manifest are always the table's own.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) != len(object_ids):
        raise CatalogueError(
            f"embeddings must be [N, D] with N = {len(object_ids)} object ids, got {embeddings.shape}"
        )
    if len(set(object_ids)) != len(object_ids):
        raise CatalogueError("object ids must be unique")
    vectors = {"embedding": embeddings}
    if aperture_flux is not None:
        vectors["aperture_flux"] = np.asarray(aperture_flux, dtype=np.float32)
    columns = dict(columns or {})
    for name, values in [*vectors.items(), *columns.items()]:
        if len(values) != len(object_ids):
            raise CatalogueError(
                f"column {name!r} has {len(values)} rows, expected {len(object_ids)}"
            )
    full = {**(manifest or {}), "count": len(object_ids), "embedding_dim": int(embeddings.shape[1])}
    with staged_directory(out_dir) as staging:
        write_parquet(staging / CATALOGUE_FILE, list(object_ids), vectors, columns)
        write_manifest(staging, full)
    return Path(out_dir).expanduser().resolve()
