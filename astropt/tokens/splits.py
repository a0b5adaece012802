"""Training from a token data set: its train/val rows, and the run's codec checked against it.

The split is the one raw images get (:func:`astropt.data.samples.split_of` of each object id),
in the data set's row order, and DDP rank ``r`` of ``w`` takes every ``w``-th row of its split:
a finite source tokenised in order gives exactly the rows, and so the batches, that training
from its images gives. Only row numbers are held (8 bytes a galaxy); tokens are read per batch.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from astropt.codec import CodecError, CodecInfo, resolve
from astropt.data.samples import DataSourceError, split_of
from astropt.tokens.reader import TokenDataset, open_token_dataset

MAX_LISTED_IDS = 200_000


class TokenRows:
    """Rows of a token data set, indexable like a ``Long[N, 576]`` tensor (``rows[[i, j]]``)."""

    def __init__(
        self, dataset: TokenDataset, rows: np.ndarray, split: str, rank: int, world_size: int
    ):
        self.dataset = dataset
        self.rows = rows
        self.split, self.rank, self.world_size = split, rank, world_size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> torch.Tensor:
        picked = self.rows[np.asarray(index, dtype=np.int64)]
        return self.dataset.take_long(picked.reshape(-1)).reshape(*np.shape(picked), -1)

    @property
    def fingerprint(self) -> str:
        shas = "".join(s["sha256"][:8] for s in self.dataset.manifest["shards"])
        blob = f"{shas}|{self.split}|{self.rank}|{self.world_size}|{len(self.rows)}"
        return "tokens-" + hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def object_ids(self) -> list[str] | None:
        """The rows' object ids (for the run's data record); None beyond ``MAX_LISTED_IDS`` rows,
        which would hold every id of the data set in memory at once."""
        if len(self.rows) > MAX_LISTED_IDS:
            return None
        ids = self.dataset.object_ids()
        return [ids[i] for i in self.rows]

    def head(self, n: int) -> torch.Tensor:
        """The first ``n`` rows' tokens (a sample for statistics)."""
        return self.dataset.take_long(self.rows[:n])


def split_rows(
    dataset: TokenDataset, split: str, val_fraction: float, rank: int = 0, world_size: int = 1
) -> TokenRows:
    """The rows of ``split`` (object-id hash, as for raw images), this rank's every ``w``-th."""
    picked: list[np.ndarray] = []
    start = 0
    for ids in dataset.iter_object_ids():
        mask = np.fromiter(
            (split_of(k, val_fraction) == split for k in ids), dtype=bool, count=len(ids)
        )
        picked.append(np.flatnonzero(mask) + start)
        start += len(ids)
    rows = np.concatenate(picked) if picked else np.empty(0, dtype=np.int64)
    if len(rows) == 0:
        raise DataSourceError(
            f"the {split} split of {dataset.path} is empty ({len(dataset)} galaxies, "
            f"val_fraction={val_fraction}); use more data or change data.val_fraction"
        )
    return TokenRows(dataset, rows[rank::world_size].astype(np.int64), split, rank, world_size)


def codec_info(dataset: TokenDataset) -> CodecInfo:
    record = dataset.codec
    return CodecInfo(
        spec=record["spec"],
        source=record["source"],
        fingerprint=record["fingerprint"],
        trained=bool(record.get("trained", True)),
    )


def check_run_codec(dataset: TokenDataset, spec: str) -> None:
    """A run's ``codec`` must be the data set's: 'default' means "the data set's"; another spec that
    resolves elsewhere is loaded once to compare fingerprints (a clear error naming both)."""
    if spec == "default":
        return
    info = codec_info(dataset)
    try:
        same_spec = _spec_target(spec) == _spec_target(info.spec)
    except CodecError:
        same_spec = False
    if same_spec:
        return
    from astropt.codec import load_codec

    loaded = load_codec(spec).info
    if loaded.fingerprint != info.fingerprint:
        raise CodecError(
            f"codec mismatch: {dataset.path} was tokenised with codec {info.spec!r} (fingerprint "
            f"{info.fingerprint}) but the run asks for codec {spec!r} (fingerprint {loaded.fingerprint}); "
            "set codec to the data set's (or 'default'), or tokenise the data again with this codec"
        )


def _spec_target(spec: str) -> str:
    source, target = resolve(spec)
    return f"{source}:{target}"


def open_for_training(path: str | None, codec_spec: str) -> TokenDataset:
    if path is None:  # data.job_id alone: only the service knows where that job wrote its tokens
        raise DataSourceError(
            "data.job_id names a tokenise job of the service, which resolves it to "
            "data.path; outside the service give data.path (the token data set)"
        )
    dataset = open_token_dataset(path)
    check_run_codec(dataset, codec_spec)
    return dataset
