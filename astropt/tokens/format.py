"""The token data set format: Arrow IPC shards of int16 codec tokens plus ``manifest.json``.

A token data set is a directory::

    manifest.json                      written last: present = the data set is complete
    shards/part-RRRRR-IIIIII.arrow     Arrow IPC files (Feather v2, uncompressed), one record batch:
                                       object_id string, tokens fixed_size_list<int16>[576],
                                       then the scalar columns (float64 or string)
    progress/rank-RRRRR.json           per rank: what it was asked to do and the shards it finished

Each shard is written to a temporary name and renamed (complete or absent), and its sha256
is recorded in the rank's progress file and then in the manifest. The tokens of a shard are
one contiguous int16 buffer, so ``pyarrow.memory_map`` (or ``numpy.memmap`` at the recorded
offset) reads them without a copy. See docs/data.md ("Token data sets").
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from astropt.constants import AION_VOCAB_SIZE, CROP, TOKEN_GRID, TOKENS_PER_IMAGE

FORMAT = "astropt-tokens"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARDS_DIR = "shards"
PROGRESS_DIR = "progress"
TOKENS_COLUMN = "tokens"
ID_COLUMN = "object_id"
TOKEN_BYTES = TOKENS_PER_IMAGE * 2
# Beside its 1,152 token bytes a galaxy costs its id (the string and a 4-byte offset: 20 bytes
# for the mock's 16-character ids, measured) and 8 bytes a float64 column; ids of up to about
# 40 characters stay within the estimate. Footers and the manifest add about 4 KB a shard.
ROW_OVERHEAD_BYTES = 48
COLUMN_BYTES = 8
SHARD_OVERHEAD_BYTES = 4096


class TokenDatasetError(ValueError):
    """A token data set that cannot be used: missing, incomplete, corrupted or of another codec."""


def layout() -> dict[str, Any]:
    """How the 576 tokens of a galaxy are laid out (the codec's own order)."""
    return {
        "tokens_per_image": TOKENS_PER_IMAGE,
        "grid": [TOKEN_GRID, TOKEN_GRID],
        "order": "row-major",
        "dtype": "int16",
        "vocab_size": AION_VOCAB_SIZE,
        "crop_px": CROP,
        "column": TOKENS_COLUMN,
    }


def estimate_bytes(n_galaxies: int, n_columns: int) -> int:
    """Bytes on disk of a token data set of ``n_galaxies`` with ``n_columns`` scalar columns
    (an upper estimate for a disk budget: string columns of more than 8 characters cost more)."""
    if n_galaxies < 0 or n_columns < 0:
        raise ValueError("n_galaxies and n_columns must be >= 0")
    per_row = TOKEN_BYTES + ROW_OVERHEAD_BYTES + COLUMN_BYTES * n_columns
    n_shards = max(
        1, -(-n_galaxies // 1024)
    )  # at least one shard per 1,024 (shard_size >= 16 is rare)
    return n_galaxies * per_row + n_shards * SHARD_OVERHEAD_BYTES + 64 * 1024


def shard_name(rank: int, index: int) -> str:
    return f"{SHARDS_DIR}/part-{rank:05d}-{index:06d}.arrow"


def progress_name(rank: int) -> str:
    return f"{PROGRESS_DIR}/rank-{rank:05d}.json"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_shard(
    out_dir: Path,
    name: str,
    object_ids: list[str],
    tokens: np.ndarray,
    columns: dict[str, np.ndarray],
    meta: dict[str, Any],
) -> dict[str, Any]:
    """Write one shard atomically (temporary name, fsync, rename); its manifest record."""
    import pyarrow as pa

    tokens = np.ascontiguousarray(tokens, dtype=np.int16)
    if tokens.ndim != 2 or tokens.shape[1] != TOKENS_PER_IMAGE or len(tokens) != len(object_ids):
        raise ValueError(f"shard {name}: tokens {tokens.shape} for {len(object_ids)} object ids")
    arrays = {
        ID_COLUMN: pa.array(object_ids, pa.string()),
        TOKENS_COLUMN: pa.FixedSizeListArray.from_arrays(
            pa.array(tokens.reshape(-1)), TOKENS_PER_IMAGE
        ),
    }
    for key, values in columns.items():
        values = np.asarray(values)
        arrays[key] = pa.array(
            values.astype(str) if values.dtype.kind in "USO" else values.astype(np.float64)
        )
    table = pa.table(arrays).replace_schema_metadata({"astropt_tokens": json.dumps(meta)})
    target = out_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=max(1, len(object_ids)))
    with tmp.open("rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return {
        "file": name,
        "rows": len(object_ids),
        "bytes": target.stat().st_size,
        "sha256": sha256_file(target),
        "first_object_id": object_ids[0] if object_ids else None,
    }


def shard_arrays(path: Path) -> tuple[Any, np.ndarray]:
    """``(arrow table, tokens int16 [n, 576])`` of a shard, memory-mapped (no copy)."""
    import pyarrow as pa

    try:
        table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
    except (OSError, pa.ArrowException) as exc:
        raise TokenDatasetError(f"{path}: not a readable token shard ({exc})") from exc
    column = table.column(TOKENS_COLUMN)
    if column.num_chunks != 1:
        column = pa.chunked_array([column.combine_chunks()])
    values = column.chunk(0).flatten()
    tokens = values.to_numpy(zero_copy_only=True).reshape(-1, TOKENS_PER_IMAGE)
    return table, tokens


def tokens_offset(path: Path) -> tuple[int, int]:
    """``(byte offset, rows)`` of the contiguous int16 token buffer inside a shard file, so a
    reader can ``pread`` or ``numpy.memmap`` the tokens without a copy."""
    import pyarrow as pa

    try:
        mapped = pa.memory_map(str(path), "r")
        base = mapped.read_buffer()
        table = pa.ipc.open_file(mapped).read_all()
    except (OSError, pa.ArrowException) as exc:
        raise TokenDatasetError(f"{path}: not a readable token shard ({exc})") from exc
    column = table.column(TOKENS_COLUMN)
    if column.num_chunks != 1:
        raise TokenDatasetError(f"{path}: the tokens are not one record batch")
    chunk = column.chunk(0)
    values = chunk.values
    start = (values.offset + chunk.offset * TOKENS_PER_IMAGE) * 2
    return values.buffers()[1].address + start - base.address, len(chunk)
