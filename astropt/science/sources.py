"""What an embedding job reads: every galaxy of a finite data source, with its scalar columns.

The images come through the project's one loading path (:func:`astropt.data.sources.open_rows`,
the same code as training); the scalar columns of table sources (for the GalSim mock, the truth
parameters in its ``params`` struct) are read beside them with pyarrow, in the same row order,
so they can ride along into the catalogue and serve as probe labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from astropt.config import DataSettings
from astropt.data.columns import derived_columns
from astropt.data.samples import DataSourceError
from astropt.data.sources import open_rows

IMAGE_COLUMNS = frozenset({"image", "legacysurvey_image", "truth", "noise_sigma", "object_id"})


@dataclass(frozen=True)
class SourceSpec:
    """What to embed: ``mock`` (``n`` galaxies of ``seed``), ``local`` (files at ``path``),
    ``hf`` (the Hugging Face data set ``path``, a hub id or a local directory, read in order,
    streamed unless ``streaming`` is false, at most ``limit`` rows; ``columns`` names its
    scalar columns that ride along, default all), or ``tokens`` (the token data set at ``path``,
    :mod:`astropt.tokens`: its codec tokens and the scalar columns it carries)."""

    kind: Literal["mock", "local", "hf", "tokens"] = "mock"
    n: int = 600
    seed: int = 777
    path: str | None = None
    image_column: str = "legacysurvey_image"
    limit: int | None = None  # read only the first ``limit`` rows
    extra: dict[str, Any] = field(default_factory=dict)  # more DataSettings fields
    hf_split: str = "train"
    streaming: bool = True
    columns: tuple[str, ...] | None = None  # hf: the scalar columns kept (None: all)

    def settings(self) -> DataSettings:
        if self.kind == "mock":
            return DataSettings(
                source="mock", n_mock=self.n, mock_seed=self.seed, path=self.path, **self.extra
            )
        if self.kind == "local":
            return DataSettings(
                source="local", path=self.path, image_column=self.image_column, **self.extra
            )
        if self.kind == "hf":
            if not self.path:
                raise DataSourceError(
                    "an hf source needs the data set: a hub id or a local directory"
                )
            return DataSettings(
                source="hf",
                hf_dataset=self.path,
                hf_split=self.hf_split,
                streaming=self.streaming,
                image_column=self.image_column,
                **self.extra,
            )
        if self.kind == "tokens":
            raise DataSourceError(
                "a token data set holds codec tokens, not images: open it with open_token_source"
            )
        raise DataSourceError(
            f"source kind must be 'mock', 'local', 'hf' or 'tokens', got {self.kind!r}"
        )

    def describe(self) -> dict[str, Any]:
        if self.kind == "mock":
            return {"kind": "mock", "n": self.n, "seed": self.seed, "limit": self.limit}
        if self.kind == "hf":
            local = Path(self.path or "").expanduser()
            return {
                "kind": "hf",
                "dataset": str(local.resolve()) if local.exists() else self.path,
                "split": self.hf_split,
                "streaming": self.streaming,
                "limit": self.limit,
                "columns": None if self.columns is None else list(self.columns),
            }
        if self.kind == "tokens":
            return {
                "kind": "tokens",
                "path": str(Path(self.path or "").resolve()),
                "limit": self.limit,
            }
        return {"kind": "local", "path": str(Path(self.path or "").resolve()), "limit": self.limit}


@dataclass
class OpenSource:
    """Rows ready to read: ``object_ids``, ``columns`` (scalar arrays) and ``batches``."""

    spec: SourceSpec
    rows: Any  # FileRows | CubeFiles
    object_ids: list[str]
    columns: dict[str, np.ndarray]
    identity: list[Any]

    def __len__(self) -> int:
        return len(self.object_ids)

    def batches(
        self, batch_size: int, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[range, np.ndarray]]:
        """``(row range, flux float32[B, 4, H, W])`` of rows ``start..stop``; all images of one
        source share a size."""
        end = len(self) if stop is None else min(stop, len(self))
        for lo in range(start, end, batch_size):
            span = range(lo, min(lo + batch_size, end))
            yield span, np.stack([self.rows.sample(i)["flux"] for i in span]).astype(np.float32)


def open_source(spec: SourceSpec, progress: bool = False) -> OpenSource:
    if spec.kind == "tokens":
        raise DataSourceError(
            "a token data set holds codec tokens, not images: open it with open_token_source"
        )
    if spec.kind == "hf":
        raise DataSourceError(
            "an hf source is read in order as a stream (astropt.science.stream_embed), "
            "not opened for random access"
        )
    rows, identity = open_rows(spec.settings())
    n = len(rows) if spec.limit is None else min(spec.limit, len(rows))
    ids = [str(k) for k in rows.keys()[:n]]
    if len(set(ids)) != len(ids):
        raise DataSourceError("object ids of the source are not unique")
    files = [Path(f) for f in getattr(rows, "files", [])]
    columns = {} if not files or not getattr(rows, "is_table", False) else scalar_columns(files)
    columns = {k: v[:n] for k, v in columns.items()}
    columns.update(derived_columns(columns))
    return OpenSource(spec, rows, ids, columns, identity)


def _read_table(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.name.lower().endswith(".parquet"):
        schema = pq.read_schema(path)
        wanted = [n for n in schema.names if n not in IMAGE_COLUMNS]
        return pq.read_table(path, columns=wanted)
    with pa.memory_map(str(path)) as source:
        try:
            table = pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            table = pa.ipc.open_file(source).read_all()
    return table.drop_columns([n for n in table.schema.names if n in IMAGE_COLUMNS])


def _scalar_fields(table: Any) -> dict[str, Any]:
    """Top-level scalar columns, and the scalar children of struct columns (by their own name,
    or ``parent.child`` when that name is taken)."""
    import pyarrow as pa

    def is_scalar(t: Any) -> bool:
        return (
            pa.types.is_integer(t)
            or pa.types.is_floating(t)
            or pa.types.is_boolean(t)
            or pa.types.is_string(t)
        )

    out: dict[str, Any] = {}
    for name, column in zip(table.schema.names, table.columns, strict=True):
        if is_scalar(column.type):
            out[name] = column
        elif pa.types.is_struct(column.type):
            flat = column.combine_chunks()
            for i in range(column.type.num_fields):
                child = column.type.field(i)
                if is_scalar(child.type):
                    key = child.name if child.name not in out else f"{name}.{child.name}"
                    out[key] = flat.field(i)
    return out


def scalar_columns(files: list[Path]) -> dict[str, np.ndarray]:
    """Scalar columns present in every file, concatenated in file order (numbers as float64)."""
    per_file = [_scalar_fields(_read_table(f)) for f in files]
    common = [k for k in per_file[0] if all(k in p for p in per_file[1:])]
    out: dict[str, np.ndarray] = {}
    for key in common:
        parts = [np.asarray(p[key].to_numpy(zero_copy_only=False)) for p in per_file]
        values = np.concatenate(parts)
        out[key] = values.astype(np.float64) if values.dtype.kind in "iufb" else values.astype(str)
    return out
