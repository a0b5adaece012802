"""A token data set (:mod:`astropt.tokens`) as what the science tools read: the codec tokens of
every galaxy, its object id, and the scalar columns the data set carries (truth parameters,
catalogue columns: labels for probes), in the data set's row order.

Nothing is decoded and no codec runs: an AION-token model reads the tokens as they are. Only
a model of the data set's codec may read them (:func:`check_model_codec`: the error names both
fingerprints). There are no pixels, so catalogues made from tokens have no aperture photometry.

    tokens = open_token_source(SourceSpec("tokens", path="data/tokens/survey"))
    for rows, batch in tokens.batches(16):   # Long[B, 576]
        ...
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from astropt.codec import CodecError, CodecHandle, check_same_codec
from astropt.data.columns import derived_columns
from astropt.data.samples import DataSourceError
from astropt.science.sources import SourceSpec
from astropt.tokens import TokenDataset, TokenDatasetError, open_token_dataset


@dataclass
class OpenTokens:
    """Rows of a token data set ready to read: ``object_ids``, ``columns`` and ``batches``."""

    spec: SourceSpec
    dataset: TokenDataset
    object_ids: list[str]
    columns: dict[str, np.ndarray]
    identity: list[Any]  # what the rows are: the shards' checksums (a re-made set differs)

    def __len__(self) -> int:
        return len(self.object_ids)

    def batches(
        self, batch_size: int, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[range, torch.Tensor]]:
        """``(row range, tokens Long[B, 576])`` of rows ``start..stop``."""
        end = len(self) if stop is None else min(stop, len(self))
        for lo in range(start, end, batch_size):
            span = range(lo, min(lo + batch_size, end))
            yield span, self.dataset.take_long(np.arange(span.start, span.stop))

    def tokens(self, rows: range) -> torch.Tensor:
        return self.dataset.take_long(np.arange(rows.start, rows.stop))

    def close(self) -> None:
        self.dataset.close()


def open_token_source(spec: SourceSpec) -> OpenTokens:
    """Open and verify (every shard's sha256) the token data set ``spec.path``; its first
    ``spec.limit`` rows when a limit is set."""
    if spec.kind != "tokens" or not spec.path:
        raise DataSourceError("a tokens source needs the path of a token data set")
    try:
        dataset = open_token_dataset(spec.path)
    except TokenDatasetError as exc:
        raise DataSourceError(str(exc)) from exc
    n = len(dataset) if spec.limit is None else min(spec.limit, len(dataset))
    ids = dataset.object_ids()[:n]
    if len(set(ids)) != len(ids):
        dataset.close()
        raise DataSourceError(f"object ids of the token data set {spec.path} are not unique")
    columns: dict[str, np.ndarray] = {}
    for name in dataset.columns:
        values = dataset.column(name)[:n]
        columns[name] = (
            values.astype(np.float64) if values.dtype.kind in "iufb" else values.astype(str)
        )
    columns.update(derived_columns(columns))
    identity = [shard.get("sha256") for shard in dataset.manifest.get("shards", [])]
    return OpenTokens(spec, dataset, ids, columns, identity)


def check_model_codec(codec: CodecHandle | None, opened: OpenTokens, what: str) -> None:
    """``what`` (a model) may read these tokens: an AION-token model of the data set's codec."""
    if codec is None:
        raise CodecError(
            f"{what} reads flux patches, not codec tokens: a token data set "
            f"({opened.dataset.path}) can only be read by an AION-token model of its codec"
        )
    check_same_codec(opened.dataset.codec, codec.info, f"the token data set {opened.dataset.path}")
