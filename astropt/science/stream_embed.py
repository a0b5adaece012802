"""Embedding catalogues of a Hugging Face data set, read in order as a stream.

A hub data set (``Smith42/legacysurvey_hsc_crossmatched``, ...) or a local directory in the
same schema is read row by row through ``datasets`` (``streaming=True`` by default: nothing is
downloaded beyond the rows embedded), in its own order, at most ``limit`` rows. Its length is
not known beforehand, so the shards (:mod:`astropt.science.shards`) are filled as the rows
come: a rerun after a stop skips the rows of its complete shards (``IterableDataset.skip``)
and continues, and the catalogue is assembled when the stream ends or ``limit`` is reached.

The images go through the project's one row parser (``raw_sample_from_row``: band order,
flagged pixels, size checks) exactly as training reads the data set; the scalar columns named
in ``SourceSpec.columns`` (default: every top-level scalar column) ride along.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from astropt.data.samples import DataSourceError, raw_sample_from_row
from astropt.data.sources import load_hf
from astropt.science.catalogue import CatalogueError
from astropt.science.embedding import (
    EmbedModel,
    EmbedOptions,
    EmbedResult,
    Progress,
    ShouldStop,
    cancelled_results,
    check_layers,
    embed_and_surprisal,
    finish_catalogues,
    open_works,
)
from astropt.science.photometry import aperture_features
from astropt.science.shards import ShardDir, shard_name
from astropt.science.sources import IMAGE_COLUMNS, SourceSpec
from astropt.science.surprisal import SURPRISAL_COLUMN, flux_inputs_and_targets

SCALAR_TYPES = ("int", "uint", "float", "bool", "string", "large_string")


def _scalar_features(features: Any) -> list[str]:
    from datasets import Value

    return [
        name
        for name, feature in (features or {}).items()
        if isinstance(feature, Value)
        and feature.dtype.startswith(SCALAR_TYPES)
        and name not in IMAGE_COLUMNS
    ]


class StreamedRows:
    """``(object_id, flux float32[4, H, W], {column: value})`` of an hf source, from row ``start``."""

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.settings = spec.settings()
        self.dataset = load_hf(self.settings)
        names = list(self.dataset.column_names or [])
        self.image_column = (
            self.settings.image_column if self.settings.image_column in names else "image"
        )
        if self.image_column not in names:
            raise DataSourceError(
                f"{spec.path}: no image column {self.settings.image_column!r} (columns: {names}); "
                "set data.image_column"
            )
        available = _scalar_features(self.dataset.features)
        if spec.columns is None:
            self.columns = [c for c in available if c != "object_id"]
        else:
            missing = sorted(set(spec.columns) - set(available))
            if missing:
                raise DataSourceError(
                    f"column(s) {missing} are not scalar columns of {spec.path}; it has {available}"
                )
            self.columns = list(spec.columns)

    def identity(self) -> list[Any]:
        """What the rows depend on besides the spec: the files of a local data set."""
        local = Path(self.spec.path or "").expanduser()
        if not local.is_dir():
            return [self.spec.path, self.spec.hf_split]
        return [
            (str(p.relative_to(local)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(local.rglob("*"))
            if p.is_file()
        ]

    def rows(self, start: int) -> Iterator[tuple[str, np.ndarray, dict[str, Any]]]:
        keep = [
            self.image_column,
            *(["object_id"] if "object_id" in self.dataset.column_names else []),
            *self.columns,
        ]
        # The image column is renamed per row, not with IterableDataset.rename_column: that
        # re-encodes every row through Python lists (measured: 3 s a row of 4x152x152 floats).
        stream = self.dataset.select_columns(keep).skip(start).with_format("numpy")
        what = f"{self.spec.path}"
        for index, row in enumerate(stream, start):
            row["image"] = row.pop(self.image_column)
            sample = raw_sample_from_row(
                row, self.settings.bands, f"{what} row {index}", key=f"row-{index}"
            )
            yield (
                sample["object_id"],
                sample["flux"],
                {c: _scalar(row.get(c)) for c in self.columns},
            )


def _scalar(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else None
    if isinstance(value, np.generic):
        value = value.item()
    return value


def embed_stream(
    model: EmbedModel,
    source: SourceSpec,
    outputs: Mapping[str | Path, EmbedOptions],
    *,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    shard_rows: int,
) -> list[EmbedResult]:
    """:func:`astropt.science.embed.embed_catalogues` for an ``hf`` source (see the module)."""
    if source.limit is None or source.limit < 1:
        raise ValueError("a streamed source needs a limit: the most rows to embed")
    recipes = list(outputs.values())
    batch_size = min(o.batch_size for o in recipes)
    started = time.perf_counter()
    check_layers(model, recipes)
    rows = StreamedRows(source)
    reader, bands = model.reader, tuple(rows.settings.bands)
    data_source = {**source.describe(), "identity": rows.identity()}
    limit = source.limit
    works, first = open_works(model, outputs, data_source, limit, shard_rows)
    resumed_from = done = first * shard_rows
    if progress:
        progress(done, limit)
    shard = first
    pending: list[tuple[str, np.ndarray, dict[str, Any]]] = []
    parts: list[list[np.ndarray]] = [[] for _ in recipes]
    apertures: list[np.ndarray] = []
    ids: list[str] = []
    columns: dict[str, list[Any]] = {c: [] for c in rows.columns}
    surprisals: list[np.ndarray] = []

    sizes: set[tuple[int, ...]] = set()

    def embed_pending() -> None:
        sizes.update(p[1].shape for p in pending)
        if len(sizes) > 1:  # the aperture photometry and the batch need one size
            raise DataSourceError(
                f"{source.path}: images of different sizes {sorted(sizes)} by row {done}; "
                "an embedding catalogue needs one image size"
            )
        flux = np.stack([p[1] for p in pending]).astype(np.float32)
        inputs, targets = flux_inputs_and_targets(model, flux, bands)
        pooled, surprisal = embed_and_surprisal(model.model, inputs, recipes, reader, targets)
        for part, values in zip(parts, pooled, strict=True):
            part.append(values)
        if surprisal is not None:
            surprisals.append(surprisal)
        apertures.append(aperture_features(flux))
        for oid, _, row_values in pending:
            ids.append(oid)
            for c in rows.columns:
                columns[c].append(row_values[c])
        pending.clear()

    def write_shard() -> None:
        nonlocal shard, parts, apertures, ids, columns, surprisals
        arrays = {c: _column_array(v) for c, v in columns.items()}
        if surprisals:
            arrays[SURPRISAL_COLUMN] = np.concatenate(surprisals)
        for work, part in zip(works, parts, strict=True):
            work.write(
                shard,
                ids,
                {"embedding": np.concatenate(part), "aperture_flux": np.concatenate(apertures)},
                arrays,
            )
        shard += 1
        parts, apertures, ids, columns = (
            [[] for _ in recipes],
            [],
            [],
            {c: [] for c in rows.columns},
        )
        surprisals = []

    for row in rows.rows(done):
        if done >= limit:
            break
        if not pending and should_stop and should_stop():  # polled before every batch
            return cancelled_results(works, outputs, done)
        pending.append(row)
        done += 1
        if len(pending) == batch_size or len(ids) + len(pending) == shard_rows:
            embed_pending()
            if progress:
                progress(done, limit)
        if len(ids) == shard_rows:
            write_shard()
    if pending:
        embed_pending()
    if ids:
        write_shard()
    if done == 0:
        raise ValueError("the data source has no rows to embed")
    if should_stop and should_stop():
        return cancelled_results(works, outputs, done)
    for work in works:
        work.total = done  # the stream's true length: the last shard may be short
        _check_unique_ids(work)
    if progress:
        progress(done, done)
    return finish_catalogues(
        model,
        works,
        outputs,
        data_source,
        done,
        sorted(rows.columns),
        started=started,
        resumed_from=resumed_from,
        shard_rows=shard_rows,
    )


def _column_array(values: list[Any]) -> np.ndarray:
    """A shard's column: numbers as float64 (None: NaN), anything else as text."""
    if all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values):
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.array(["" if v is None else str(v) for v in values], dtype=str)


def _check_unique_ids(work: ShardDir) -> None:
    import pyarrow.parquet as pq

    seen: set[str] = set()
    for index in range(work.n_shards):
        for oid in (
            pq.read_table(work.path / shard_name(index), columns=["object_id"])
            .column(0)
            .to_pylist()
        ):
            if oid in seen:
                raise CatalogueError(
                    f"object id {oid!r} occurs twice in the data source: a catalogue needs "
                    "unique object ids"
                )
            seen.add(oid)
