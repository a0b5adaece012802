"""The work directory of a catalogue being embedded: Parquet shards of a bounded number of rows.

An embedding run writes rows ``[i * shard_rows, (i + 1) * shard_rows)`` of the source to
``shard_{i:06d}.parquet`` as soon as they are embedded (each written to a temporary name and
renamed, so a shard on disk is always whole), so memory stays flat however large the source
is, and a run that was stopped, cancelled or killed continues after its last complete shard.
``work.json`` holds what the rows depend on (model, codec, data source, pooling, shard size):
shards of another recipe are never mixed in, the directory is started afresh instead.

When every shard is there, :func:`assemble` streams them, one row group each, into the
catalogue's staging directory (:func:`astropt.science.catalogue.staged_directory`), and the
work directory is removed once the catalogue is renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from astropt.science.catalogue import CATALOGUE_FILE, write_parquet

DEFAULT_SHARD_ROWS = 2048
WORK_FILE = "work.json"


def work_dir_for(out_dir: str | Path) -> Path:
    """The hidden sibling ``.NAME.work`` of a catalogue directory (found again on a rerun)."""
    target = Path(out_dir).expanduser().resolve()
    return target.with_name(f".{target.name}.work")


def shard_name(index: int) -> str:
    return f"shard_{index:06d}.parquet"


@dataclass
class ShardDir:
    path: Path
    key: dict[str, Any]  # what the rows depend on
    total: int
    shard_rows: int

    @property
    def n_shards(self) -> int:
        return -(-self.total // self.shard_rows)

    def span(self, index: int) -> range:
        return range(index * self.shard_rows, min((index + 1) * self.shard_rows, self.total))

    def open(self) -> int:
        """Make the directory ready; the number of leading shards already complete (0 when
        the directory held another recipe's shards, which are removed)."""
        record = {"key": self.key, "total": self.total, "shard_rows": self.shard_rows}
        work_file = self.path / WORK_FILE
        try:
            same = json.loads(work_file.read_text()) == json.loads(json.dumps(record, default=str))
        except (OSError, json.JSONDecodeError):
            same = False
        if not same:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path.mkdir(parents=True)
            _write_atomic(
                work_file, json.dumps(record, indent=2, sort_keys=True, default=str).encode()
            )
            return 0
        return self.complete_shards()

    def complete_shards(self) -> int:
        import pyarrow.parquet as pq

        done = 0
        while done < self.n_shards:
            path = self.path / shard_name(done)
            try:
                rows = pq.read_metadata(path).num_rows
            except (OSError, ValueError):  # missing, or not a Parquet file (pyarrow's ArrowInvalid)
                break
            if rows != len(self.span(done)):
                break
            done += 1
        return done

    def write(
        self,
        index: int,
        object_ids: list[str],
        vectors: dict[str, np.ndarray],
        columns: dict[str, np.ndarray],
    ) -> None:
        path = self.path / shard_name(index)
        partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
        write_parquet(partial, object_ids, vectors, columns)
        os.replace(partial, path)

    def assemble(self, staging: Path) -> int:
        """Concatenate the shards into ``staging/catalogue.parquet`` (one row group each)."""
        import pyarrow.parquet as pq

        writer = None
        rows = 0
        try:
            for index in range(self.n_shards):
                table = pq.read_table(self.path / shard_name(index))
                if writer is None:
                    writer = pq.ParquetWriter(
                        str(staging / CATALOGUE_FILE), table.schema, compression="zstd"
                    )
                writer.write_table(table)
                rows += table.num_rows
        finally:
            if writer is not None:
                writer.close()
        return rows

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    partial.write_bytes(data)
    os.replace(partial, path)


def file_signature(directory: str | Path) -> list[tuple[str, int, int]]:
    """(name, size, mtime) of a checkpoint's files: a replaced checkpoint is another model."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return [
        (p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(directory.iterdir())
        if p.is_file()
    ]
