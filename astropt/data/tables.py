"""Rows of local Parquet / Arrow files read with pyarrow, a few record batches at a time.

This replaces ``datasets.load_dataset("parquet", data_files=...)`` for ``mock`` and ``local``
sources, whose memory grew with the data set (#24): ``load_dataset`` first converts every file
into an uncompressed Arrow cache (about 0.8 MB a mock galaxy, on disk and, while converting,
in the allocator), then memory-maps it, and every row read stays resident as a file page until
the process ends: ``astropt train`` on 1,000 mock galaxies peaked at 2.5 GB, on 8,000 at 10.1 GB.
Here a cursor reads forward through the files (the project reads rows in order: token cache,
crops, embeddings, fine-tuning, live probes), so at most a record batch is decoded at a time.
A row before the cursor restarts the read at its row group (correct, but slow for random access).
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from astropt.data.samples import DataSourceError, raw_sample_from_row

ROW_COLUMNS = ("object_id", "truth", "noise_sigma")  # read beside the image column
BATCH_ROWS = 16


def nested_numpy(array: Any) -> Any:
    """A one-row Arrow value as numpy: nested lists become an n-d array, structs dicts (what
    ``datasets``' numpy format gives)."""
    import numpy as np
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if isinstance(array.type, pa.ExtensionType):
        array = array.storage
    if pa.types.is_struct(array.type):
        kind = array.type
        return {kind.field(i).name: nested_numpy(array.field(i)) for i in range(kind.num_fields)}
    shape = []
    while (
        pa.types.is_list(array.type)
        or pa.types.is_large_list(array.type)
        or pa.types.is_fixed_size_list(array.type)
    ):
        flat = array.flatten()
        shape.append(len(flat) // max(1, len(array)) if len(array) else 0)
        array = flat.storage if isinstance(flat.type, pa.ExtensionType) else flat
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        values = np.asarray(array.to_pylist(), dtype=object)
    else:
        values = array.to_numpy(zero_copy_only=False)
    return values.reshape(shape) if shape else (values[0] if len(values) else None)


_nested = nested_numpy


class FileRows:
    """Random (best in order) access to the rows of Parquet / Arrow IPC files in the HF schema."""

    is_table = True

    def __init__(
        self, files: list[Path], rows_per_file: list[int], image_column: str, bands: tuple[str, ...]
    ):
        self.files = list(files)
        self.rows_per_file = list(rows_per_file)
        self.image_column = image_column
        self.bands = tuple(bands)
        self._offsets = [0]
        for n in self.rows_per_file:
            self._offsets.append(self._offsets[-1] + n)
        self._lock = threading.Lock()
        self._cursor: dict[str, Any] | None = None

    def __len__(self) -> int:
        return self._offsets[-1]

    def keys(self) -> list[str]:
        keys: list[str] = []
        for file, n in zip(self.files, self.rows_per_file, strict=True):
            column = _read_column(file, "object_id")
            start = len(keys)
            keys.extend(
                [str(k) for k in column]
                if column is not None
                else [f"row-{i}" for i in range(start, start + n)]
            )
        return keys

    def where(self, index: int) -> str:
        file = bisect.bisect_right(self._offsets, index) - 1
        return f"{self.files[file]} (row {index - self._offsets[file]})"

    def sample(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} out of range [0, {len(self)})")
        file = bisect.bisect_right(self._offsets, index) - 1
        local = index - self._offsets[file]
        with self._lock:
            batch, row = self._seek(file, local)
            record = {"image": _nested(batch.column(self._image(batch)).slice(row, 1))}
            for name in ROW_COLUMNS:
                if name in batch.schema.names:
                    column = batch.column(name)
                    record[name] = (
                        column[row].as_py()
                        if name == "object_id"
                        else _nested(column.slice(row, 1))
                    )
        return raw_sample_from_row(record, self.bands, self.where(index), f"row-{index}")

    def check_each_file(self) -> None:
        """Decode the first row of every file so a wrong shape fails now, naming the file."""
        for start, n in zip(self._offsets[:-1], self.rows_per_file, strict=True):
            if n:
                self.sample(start)
        self._cursor = None

    def _image(self, batch: Any) -> str:
        return self.image_column if self.image_column in batch.schema.names else "image"

    def _seek(self, file: int, row: int) -> tuple[Any, int]:
        cursor = self._cursor
        if (
            cursor is None
            or cursor["pid"] != os.getpid()
            or cursor["file"] != file
            or row < cursor["start"]
        ):
            first, batches = self._batches(self.files[file], row)
            cursor = self._cursor = {
                "pid": os.getpid(),
                "file": file,
                "start": first,
                "batch": None,
                "batches": batches,
            }
        while cursor["batch"] is None or row >= cursor["start"] + cursor["batch"].num_rows:
            if cursor["batch"] is not None:
                cursor["start"] += cursor["batch"].num_rows
            try:
                cursor["batch"] = next(cursor["batches"])
            except StopIteration:
                self._cursor = None
                raise DataSourceError(
                    f"{self.files[file]}: row {row} is past the end of the file"
                ) from None
        return cursor["batch"], row - cursor["start"]

    def _batches(self, file: Path, row: int) -> tuple[int, Iterator[Any]]:
        """``(first row, record batches)`` of ``file`` from the row group holding ``row``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        wanted = {self.image_column, "image", *ROW_COLUMNS}
        if file.name.lower().endswith(".parquet"):
            pf = pq.ParquetFile(file)
            first = 0
            groups: list[int] = []
            for g in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                if not groups and first + n <= row:
                    first += n
                    continue
                groups.append(g)
            columns = [c for c in pf.schema_arrow.names if c in wanted]
            return first, pf.iter_batches(batch_size=BATCH_ROWS, row_groups=groups, columns=columns)
        source = pa.OSFile(str(file))  # not memory-mapped: read pages would stay resident
        try:
            reader: Any = pa.ipc.open_stream(source)
            batches: Iterator[Any] = iter(reader)
        except pa.ArrowInvalid:
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        return 0, (b.select([c for c in b.schema.names if c in wanted]) for b in batches)


def _read_column(file: Path, name: str) -> list[Any] | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if file.name.lower().endswith(".parquet"):
        if name not in pq.ParquetFile(file).schema_arrow.names:
            return None
        return pq.read_table(file, columns=[name]).column(name).to_pylist()
    with pa.OSFile(str(file)) as source:
        try:
            table = pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            table = pa.ipc.open_file(source).read_all()
        return table.column(name).to_pylist() if name in table.schema.names else None
