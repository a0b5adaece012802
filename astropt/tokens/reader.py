"""Reading a token data set: verified on open, tokens memory-mapped or read row by row.

``open_token_dataset(path)`` checks the manifest, every shard's size and (by default) its
sha256, so a truncated or corrupted shard is an error naming the file, never read silently.
:class:`TokenDataset` then gives the object ids and scalar columns (per shard, from Arrow),
the tokens of any rows (:meth:`TokenDataset.take`, ``pread`` of the contiguous int16 buffer:
no file pages are held, so memory stays flat however large the data set), and a
memory-mapped int16 array per shard (:meth:`TokenDataset.shard_tokens`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astropt.constants import TOKENS_PER_IMAGE
from astropt.tokens.format import (
    FORMAT,
    FORMAT_VERSION,
    ID_COLUMN,
    MANIFEST,
    TOKEN_BYTES,
    TokenDatasetError,
    read_json,
    sha256_file,
    shard_arrays,
    tokens_offset,
)


@dataclass
class _Shard:
    path: Path
    rows: int
    offset: int = -1  # byte offset of the token buffer, found on first read
    fd: int = -1


@dataclass
class TokenDataset:
    """A verified token data set (see :mod:`astropt.tokens.format`)."""

    path: Path
    manifest: dict[str, Any]
    shards: list[_Shard]
    starts: np.ndarray = field(repr=False)  # first global row of each shard, then the total

    @property
    def codec(self) -> dict[str, Any]:
        return dict(self.manifest["codec"])

    @property
    def codec_fingerprint(self) -> str:
        return str(self.manifest["codec"]["fingerprint"])

    @property
    def columns(self) -> list[str]:
        return list(self.manifest.get("columns", []))

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getstate__(self) -> dict[str, Any]:  # open file descriptors do not cross processes
        state = dict(self.__dict__)
        state["shards"] = [_Shard(s.path, s.rows, s.offset) for s in self.shards]
        return state

    def iter_object_ids(self) -> Iterator[list[str]]:
        """The object ids, shard by shard (one shard's ids in memory at a time)."""
        for shard in self.shards:
            table, _ = shard_arrays(shard.path)
            yield [str(x) for x in table.column(ID_COLUMN).to_pylist()]

    def object_ids(self) -> list[str]:
        return [k for ids in self.iter_object_ids() for k in ids]

    def column(self, name: str) -> np.ndarray:
        """A scalar column over all rows (float64, or str for text)."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r} in {self.path} (it has {self.columns})")
        parts = [shard_arrays(s.path)[0].column(name).to_numpy() for s in self.shards]
        return np.concatenate(parts) if parts else np.empty(0)

    def shard_tokens(self, index: int) -> np.ndarray:
        """Shard ``index``'s tokens, int16 ``[rows, 576]``, memory-mapped read-only (no copy)."""
        shard = self._located(index)
        return np.memmap(
            shard.path,
            dtype=np.int16,
            mode="r",
            offset=shard.offset,
            shape=(shard.rows, TOKENS_PER_IMAGE),
        )

    def _located(self, index: int) -> _Shard:
        shard = self.shards[index]
        if shard.offset < 0:
            shard.offset, rows = tokens_offset(shard.path)
            if rows != shard.rows:
                raise TokenDatasetError(
                    f"{shard.path}: {rows} rows, the manifest says {shard.rows}"
                )
        if shard.fd < 0:
            shard.fd = os.open(shard.path, os.O_RDONLY)
        return shard

    def take(self, rows: np.ndarray | list[int]) -> np.ndarray:
        """Tokens int16 ``[len(rows), 576]`` of global rows ``rows`` (any order, repeats allowed).

        Each run of consecutive rows is one ``pread``: nothing stays mapped, so resident memory
        does not grow with the rows read."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows out of range [0, {len(self)})")
        out = np.empty((len(rows), TOKENS_PER_IMAGE), dtype=np.int16)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        shard_of = np.searchsorted(self.starts, sorted_rows, side="right") - 1
        i = 0
        while i < len(sorted_rows):
            j = i + 1
            while (
                j < len(sorted_rows)
                and shard_of[j] == shard_of[i]
                and sorted_rows[j] - sorted_rows[j - 1] <= 1
            ):
                j += 1
            shard = self._located(int(shard_of[i]))
            first = int(sorted_rows[i] - self.starts[shard_of[i]])
            last = int(sorted_rows[j - 1] - self.starts[shard_of[i]])
            data = os.pread(
                shard.fd, (last - first + 1) * TOKEN_BYTES, shard.offset + first * TOKEN_BYTES
            )
            block = np.frombuffer(data, dtype=np.int16).reshape(-1, TOKENS_PER_IMAGE)
            out[order[i:j]] = block[sorted_rows[i:j] - sorted_rows[i]]
            i = j
        return out

    def take_long(self, rows: np.ndarray | list[int]) -> torch.Tensor:
        """``take`` as the ``Long`` tensor the model reads."""
        return torch.from_numpy(self.take(rows).astype(np.int64))

    def close(self) -> None:
        for shard in self.shards:
            if shard.fd >= 0:
                os.close(shard.fd)
                shard.fd = -1


def open_token_dataset(
    path: str | Path,
    *,
    expect_codec_fingerprint: str | None = None,
    verify: bool = True,
) -> TokenDataset:
    """Open and verify a token data set; ``verify=False`` checks sizes only (not sha256)."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise TokenDatasetError(f"token data set not found: {root}")
    manifest = read_json(root / MANIFEST)
    if manifest is None:
        partial = (root / "progress").is_dir()
        raise TokenDatasetError(
            f"{root} has no readable {MANIFEST}: "
            + (
                "it is still being made, or a rank has not finished "
                "(run the remaining ranks, then finalize_manifest)"
                if partial
                else "not a token data set"
            )
        )
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise TokenDatasetError(
            f"{root / MANIFEST}: format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')!r}; this astropt reads {FORMAT!r} {FORMAT_VERSION}"
        )
    fingerprint = manifest["codec"]["fingerprint"]
    if expect_codec_fingerprint is not None and expect_codec_fingerprint != fingerprint:
        raise TokenDatasetError(
            f"codec mismatch: {root} was tokenised with codec {manifest['codec'].get('spec')!r} (fingerprint "
            f"{fingerprint}) but the model uses codec fingerprint {expect_codec_fingerprint}; tokens of two "
            "codecs cannot be mixed: tokenise the data again with the model's codec, or use a model of this codec"
        )
    shards = []
    for record in manifest["shards"]:
        file = root / record["file"]
        if not file.is_file():
            raise TokenDatasetError(f"shard {file} is missing (listed in {root / MANIFEST})")
        size = file.stat().st_size
        if size != record["bytes"]:
            raise TokenDatasetError(
                f"shard {file} is truncated or changed: {size} bytes, the manifest "
                f"says {record['bytes']}"
            )
        if verify and sha256_file(file) != record["sha256"]:
            raise TokenDatasetError(
                f"shard {file} is corrupted: its sha256 differs from the manifest's"
            )
        shards.append(_Shard(file, int(record["rows"])))
    starts = np.concatenate([[0], np.cumsum([s.rows for s in shards], dtype=np.int64)]).astype(
        np.int64
    )
    if int(starts[-1]) != manifest["n_galaxies"]:
        raise TokenDatasetError(
            f"{root / MANIFEST}: shards hold {int(starts[-1])} rows, n_galaxies says "
            f"{manifest['n_galaxies']}"
        )
    return TokenDataset(root, manifest, shards, starts)
