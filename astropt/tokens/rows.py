"""Reading a source's rows in order, one rank's part, decoded and cropped in worker processes.

A reader gives a rank's rows as cheap handles (an Arrow record batch and a row in it, or a
file) from any position, and decodes one handle into ``(object_id, crop float32[4, 96, 96],
scalars)``. :class:`Chunks` is the ``torch`` ``IterableDataset`` the DataLoader workers run:
the rank's rows from ``start`` are cut into codec batches of ``batch`` consecutive rows and
worker ``w`` of ``W`` decodes batches ``w, w + W, ...``; the DataLoader hands the batches back
round-robin, so the main process sees them in row order whatever ``W`` is. Nothing holds
more than a few record batches: memory is flat in the size of the source.

Parts: finite sources (mock, local tables or cubes) are split into contiguous row blocks,
rank ``r`` of ``w`` reading rows ``[r N / w, (r + 1) N / w)``; a streamed Hugging Face source
is split by ``datasets.distributed.split_dataset_by_node`` (its files when there are enough,
else every ``w``-th row) and resumed with ``IterableDataset.skip``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astropt.config import DataSettings
from astropt.data.samples import DataSourceError, raw_sample_from_row
from astropt.data.tables import nested_numpy
from astropt.images import centre_crop

READ_BATCH = 64  # rows per Arrow record batch read from a file or stream
IMAGE_FIELDS = frozenset({"image", "legacysurvey_image", "truth", "noise_sigma", "object_id"})


def cropped(flux: np.ndarray) -> np.ndarray:
    """The codec's own centre crop (astropt.images), as its own float32 array: what a DataLoader
    worker sends over its queue is 147 KiB a galaxy, not the whole cut-out."""
    return np.ascontiguousarray(centre_crop(flux), dtype=np.float32)


def scalar_row(batch: Any, row: int, skip: frozenset[str]) -> dict[str, Any]:
    """Top-level scalar fields of one row and the scalar children of its structs (by their own
    name, or ``parent.child`` when taken), as :func:`astropt.science.sources.scalar_columns`."""
    import pyarrow as pa

    def scalar(t: Any) -> bool:
        return (
            pa.types.is_integer(t)
            or pa.types.is_floating(t)
            or pa.types.is_boolean(t)
            or pa.types.is_string(t)
        )

    out: dict[str, Any] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if name in skip:
            continue
        if scalar(column.type):
            out[name] = column[row].as_py()
        elif pa.types.is_struct(column.type):
            for i in range(column.type.num_fields):
                child = column.type.field(i)
                if scalar(child.type):
                    out[child.name if child.name not in out else f"{name}.{child.name}"] = (
                        column.field(i)[row].as_py()
                    )
    return out


@dataclass
class Decoded:
    object_id: str
    crop: np.ndarray
    scalars: dict[str, Any]


@dataclass
class TableReader:
    """Rows of Parquet / Arrow files in the Hugging Face schema, read with pyarrow in batches."""

    files: list[Path]
    rows_per_file: list[int]
    image_column: str
    bands: tuple[str, ...]
    columns: list[str]
    lo: int = 0
    hi: int = 0

    def count(self) -> int:
        return self.hi - self.lo

    def _batches(self, file: Path, skip: int) -> Iterator[tuple[Any, int]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if file.name.lower().endswith(".parquet"):
            pf = pq.ParquetFile(file)
            groups: list[int] = []
            for g in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                if not groups and skip >= n:  # whole row groups before the start are not read
                    skip -= n
                    continue
                groups.append(g)
            names = pf.schema_arrow.names
            wanted = [
                n
                for n in names
                if n == self.image_column
                or n == "object_id"
                or (self.columns and n not in IMAGE_FIELDS)
            ]  # not truth, noise, other images
            batches = (
                pf.iter_batches(batch_size=READ_BATCH, row_groups=groups, columns=wanted)
                if groups
                else iter(())
            )
        else:
            source = pa.OSFile(str(file))
            try:
                reader = pa.ipc.open_stream(source)
            except pa.ArrowInvalid:
                reader = pa.ipc.open_file(pa.OSFile(str(file)))
                reader = (reader.get_batch(i) for i in range(reader.num_record_batches))
            batches = iter(reader)
        for batch in batches:
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            yield batch, skip
            skip = 0

    def iter_rows(self, start: int) -> Iterator[Any]:
        position, first = self.lo + start, 0
        for file, n in zip(self.files, self.rows_per_file, strict=True):
            if position >= first + n or position >= self.hi:
                first += n
                continue
            for batch, row in self._batches(file, position - first):
                for i in range(row, batch.num_rows):
                    if position >= self.hi:
                        return
                    yield batch, i, str(file)
                    position += 1
            first += n

    def decode(self, handle: Any) -> Decoded:
        batch, i, where = handle
        names = batch.schema.names
        column = self.image_column if self.image_column in names else "image"
        row = {"image": nested_numpy(batch.column(column).slice(i, 1))}
        if "object_id" in names:
            row["object_id"] = batch.column("object_id")[i].as_py()
        sample = raw_sample_from_row(row, self.bands, f"{where} (row {i})", key=f"row-{i}")
        scalars = (
            pick_columns(scalar_row(batch, i, IMAGE_FIELDS), self.columns, where)
            if self.columns
            else {}
        )
        return Decoded(str(sample["object_id"]), cropped(sample["flux"]), scalars)


@dataclass
class StreamReader:
    """A streamed Hugging Face data set (``datasets`` streaming, Arrow batches)."""

    stream: Any  # datasets.IterableDataset, already this rank's part
    image_column: str
    bands: tuple[str, ...]
    columns: list[str]
    limit: int | None
    what: str

    def count(self) -> int | None:
        return self.limit

    def iter_rows(self, start: int) -> Iterator[Any]:
        stream = self.stream.skip(start) if start else self.stream
        position = start
        for table in stream.with_format("arrow").iter(batch_size=READ_BATCH):
            for batch in table.to_batches():  # record batches: plain (not chunked) columns
                for i in range(batch.num_rows):
                    if self.limit is not None and position >= self.limit:
                        return
                    yield batch, i, position
                    position += 1

    def decode(self, handle: Any) -> Decoded:
        table, i, position = handle
        names = table.schema.names
        column = self.image_column if self.image_column in names else "image"
        row = {"image": nested_numpy(table.column(column).slice(i, 1))}
        if "object_id" in names:
            row["object_id"] = table.column("object_id")[i].as_py()
        what = f"{self.what} (row {position} of this part)"
        sample = raw_sample_from_row(row, self.bands, what, key=f"row-{position}")
        scalars = (
            pick_columns(scalar_row(table, i, IMAGE_FIELDS), self.columns, self.what)
            if self.columns
            else {}
        )
        return Decoded(str(sample["object_id"]), cropped(sample["flux"]), scalars)


@dataclass
class CubeReader:
    """FITS / ``.npy`` cubes, one galaxy a file (no scalar columns)."""

    rows: Any  # astropt.data.local.CubeFiles
    lo: int = 0
    hi: int = 0

    def count(self) -> int:
        return self.hi - self.lo

    def iter_rows(self, start: int) -> Iterator[Any]:
        yield from range(self.lo + start, self.hi)

    def decode(self, handle: Any) -> Decoded:
        sample = self.rows.sample(handle)
        return Decoded(str(sample["object_id"]), cropped(sample["flux"]), {})


def pick_columns(values: dict[str, Any], wanted: list[str], where: str) -> dict[str, Any]:
    from astropt.data.columns import derived_columns

    missing = [c for c in wanted if c not in values]
    if missing:
        arrays = {
            k: np.asarray([v], dtype=np.float64)
            for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        values = {**values, **{k: float(v[0]) for k, v in derived_columns(arrays).items()}}
        missing = [c for c in wanted if c not in values]
    if missing:
        raise DataSourceError(
            f"{where}: no column(s) {missing} to carry along; the rows have {sorted(values)}"
        )
    return {c: values[c] for c in wanted}


class Chunks(torch.utils.data.IterableDataset):
    """Codec batches of a rank's rows from ``start``: ``(ids, crops Float[B, 4, 96, 96], scalars)``;
    ``stop`` ends the part early (rows, exclusive; None: until the reader ends)."""

    def __init__(self, reader: Any, start: int, batch: int, stop: int | None = None) -> None:
        super().__init__()
        self.reader, self.start, self.batch, self.stop = reader, start, batch, stop

    def __iter__(self) -> Iterator[tuple[list[str], torch.Tensor, dict[str, list[Any]]]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        pending: list[Decoded] = []
        position = self.start
        for handle in self.reader.iter_rows(self.start):
            if self.stop is not None and position >= self.stop:
                break
            if ((position - self.start) // self.batch) % workers == worker:
                pending.append(self.reader.decode(handle))
            position += 1
            if (position - self.start) % self.batch == 0 and pending:
                yield collate(pending)
                pending = []
        if pending:
            yield collate(pending)


def collate(items: list[Decoded]) -> tuple[list[str], torch.Tensor, dict[str, list[Any]]]:
    crops = torch.from_numpy(np.stack([d.crop for d in items]))
    keys = list(items[0].scalars)
    return [d.object_id for d in items], crops, {k: [d.scalars[k] for d in items] for k in keys}


# -- opening one rank's part of a source ----------------------------------------------------


def _block(n: int, rank: int, world_size: int) -> tuple[int, int]:
    return n * rank // world_size, n * (rank + 1) // world_size


def _signature(files: list[Path]) -> dict[str, Any]:
    entries = [(f.resolve().as_posix(), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return {
        "n_files": len(files),
        "files_sha256": hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:32],
    }


def open_reader(
    cfg: DataSettings,
    *,
    rank: int,
    world_size: int,
    limit: int | None,
    columns: list[str],
) -> tuple[Any, dict[str, Any]]:
    """``(reader of this rank's part, description of the source for the manifest)``."""
    from astropt.data.local import CubeFiles, check_table_files, discover
    from astropt.data.mock import GENERATOR_VERSION
    from astropt.data.sources import ensure_mock

    if cfg.source == "hf":
        return _open_stream(cfg, rank=rank, world_size=world_size, limit=limit, columns=columns)
    if cfg.source == "mock":
        kind, files = "table", ensure_mock(cfg, progress=False)
        source: dict[str, Any] = {
            "kind": "mock",
            "n": cfg.n_mock,
            "seed": cfg.mock_seed,
            "generator_version": GENERATOR_VERSION,
        }
    elif cfg.source == "local":
        assert cfg.path  # DataSettings requires it for a local source
        kind, files = discover(cfg.path)
        source = {
            "kind": "local",
            "path": str(Path(cfg.path).expanduser().resolve()),
            **_signature(files),
        }
    else:
        raise DataSourceError(f"cannot tokenise data.source {cfg.source!r}: use mock, local or hf")
    source.update(image_column=cfg.image_column, bands=list(cfg.bands))
    if kind == "cube":
        if columns:
            raise DataSourceError(
                "FITS / .npy cubes have no scalar columns to carry along; drop 'columns'"
            )
        assert cfg.path  # cubes come from a local source only
        rows = CubeFiles(Path(cfg.path).expanduser(), files, cfg.bands)
        n = len(rows) if limit is None else min(limit, len(rows))
        lo, hi = _block(n, rank, world_size)
        return CubeReader(rows, lo, hi), source
    column, counts = check_table_files(files, cfg.image_column)
    n = sum(counts) if limit is None else min(limit, sum(counts))
    lo, hi = _block(n, rank, world_size)
    return TableReader(files, counts, column, cfg.bands, list(columns), lo, hi), source


def _open_stream(
    cfg: DataSettings,
    *,
    rank: int,
    world_size: int,
    limit: int | None,
    columns: list[str],
) -> tuple[StreamReader, dict[str, Any]]:
    from datasets.distributed import split_dataset_by_node

    from astropt.data.sources import load_hf

    stream = load_hf(cfg.model_copy(update={"streaming": True}))
    names = stream.column_names
    image_column = cfg.image_column if names is None or cfg.image_column in names else "image"
    if names is not None:
        if image_column not in names:
            raise DataSourceError(
                f"{cfg.hf_dataset}: no image column {cfg.image_column!r} (columns: {names}); "
                "set data.image_column"
            )
        wanted = [image_column, "object_id", *[c for c in columns if c in names]]
        features = stream.features or {}
        holders = [
            c
            for c in names
            if c not in IMAGE_FIELDS
            and c not in wanted
            and isinstance(features.get(c), dict)
            and any(k in columns for k in features[c])
        ]  # struct columns holding a wanted child
        stream = stream.select_columns([c for c in [*wanted, *holders] if c in names])
    if world_size > 1:
        stream = split_dataset_by_node(stream, rank=rank, world_size=world_size)
    part_limit = (
        None if limit is None else limit // world_size + (1 if rank < limit % world_size else 0)
    )
    local = Path(cfg.hf_dataset).expanduser()
    source: dict[str, Any] = {
        "kind": "hf",
        "dataset": str(local.resolve()) if local.exists() else cfg.hf_dataset,
        "split": cfg.hf_split,
        "revision": _hub_revision(cfg.hf_dataset, local),
        "image_column": cfg.image_column,
        "bands": list(cfg.bands),
        "limit": limit,
    }
    if local.exists():
        source.update(_signature(sorted(p for p in local.rglob("*") if p.is_file())))
    return StreamReader(
        stream, image_column, cfg.bands, list(columns), part_limit, cfg.hf_dataset
    ), source


def _hub_revision(dataset_id: str, local: Path) -> str | None:
    """The hub data set's commit sha, or None (a local directory, offline, or unreachable)."""
    from astropt.data.sources import _offline

    if local.exists() or _offline():
        return None
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(dataset_id, timeout=5.0).sha
    except Exception:  # the revision is a record, not a requirement
        return None
