"""Probe a model in memory: embed a fixed set of tokenised galaxies, fit the ridge probes.

What the live probe of a training run and the probe of every checkpoint of a run share: a
:class:`ProbeSet` (the model inputs, codec tokens or flux patches, and labels of the same
galaxies, in one order) and
:func:`probe_model`, which embeds it with one forward pass per batch and scores each label
with :func:`astropt.science.probe.ridge_cv` (standardised features, k-fold R^2). No catalogue
is written: the embeddings of a few hundred galaxies live in memory for one call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from astropt.config import DataSettings
from astropt.data.samples import DataSourceError
from astropt.model import GPT
from astropt.science.embedding import EmbedOptions, embed_inputs_many
from astropt.science.probe import DEFAULT_ALPHA, DEFAULT_FOLDS, LabelScore, ridge_cv
from astropt.science.readers import ModelReader
from astropt.science.sources import derived_columns, scalar_columns
from astropt.stopping import raise_if_stopped

ShouldStop = Callable[[], bool]


@dataclass
class ProbeSet:
    """Model inputs (:class:`ModelReader`: tensors of N rows) and label arrays ``float64[N]``
    of the same N galaxies."""

    object_ids: list[str]
    inputs: dict[str, torch.Tensor]
    labels: dict[str, np.ndarray]
    reader: ModelReader

    def __post_init__(self) -> None:
        n = len(self.object_ids)
        if any(v.shape[0] != n for v in self.inputs.values()) or any(
            len(v) != n for v in self.labels.values()
        ):
            raise ValueError("a probe set's ids, inputs and labels must have one row per galaxy")

    def rows(self, lo: int, hi: int) -> dict[str, torch.Tensor]:
        return {k: v[lo:hi] for k, v in self.inputs.items()}

    def __len__(self) -> int:
        return len(self.object_ids)


def table_files(settings: DataSettings) -> list[Path]:
    """The table files of a finite mock or local source, in the row order training reads."""
    from astropt.data.local import discover
    from astropt.data.sources import ensure_mock

    if settings.source == "mock":
        return ensure_mock(settings, progress=False)
    if settings.source == "local" and settings.path:
        kind, files = discover(settings.path)
        if kind == "table":
            return files
        raise DataSourceError(
            f"{settings.path}: FITS/.npy cubes carry no label columns; "
            "probes need a Parquet/Arrow table"
        )
    raise DataSourceError(
        f"probes read labels from mock or local tables, not data.source {settings.source!r}"
    )


def source_columns(settings: DataSettings) -> dict[str, np.ndarray]:
    """Every scalar column of a source (and the derived magnitudes and colours), all rows."""
    columns = scalar_columns(table_files(settings))
    columns.update(derived_columns(columns))
    return columns


def select_labels(
    columns: dict[str, np.ndarray], labels: Sequence[str], rows: Sequence[int]
) -> dict[str, np.ndarray]:
    """``labels`` at ``rows`` as float64; a missing or non-numeric label fails naming the choices."""
    missing = [name for name in labels if name not in columns]
    if missing:
        numeric = sorted(k for k, v in columns.items() if v.dtype.kind == "f")
        raise DataSourceError(
            f"label(s) {missing} are not columns of the data source; it has {numeric}"
        )
    text = [name for name in labels if columns[name].dtype.kind != "f"]
    if text:
        raise DataSourceError(f"label(s) {text} are not numeric columns")
    index = np.asarray(rows, dtype=np.int64)
    return {name: columns[name][index].astype(np.float64) for name in labels}


def embed_set(
    model: GPT,
    probe_set: ProbeSet,
    options: EmbedOptions,
    *,
    dtype: torch.dtype | None = None,
    stop: ShouldStop | None = None,
) -> np.ndarray:
    """Embeddings ``float32[N, C]`` of the probe set, ``options.batch_size`` galaxies a forward."""
    parts = []
    for lo in range(0, len(probe_set), options.batch_size):
        raise_if_stopped(stop, "probing")
        inputs = probe_set.rows(lo, lo + options.batch_size)
        parts.append(embed_inputs_many(model, inputs, [options], probe_set.reader, dtype)[0])
    return np.concatenate(parts)


def score_embeddings(
    x: np.ndarray,
    labels: dict[str, np.ndarray],
    *,
    folds: int = DEFAULT_FOLDS,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
) -> dict[str, LabelScore | None]:
    """Cross-validated ridge R^2 per label (None where too few rows have a finite label)."""
    out: dict[str, LabelScore | None] = {}
    for name, y in labels.items():
        try:
            out[name] = ridge_cv(x, y, folds=folds, alpha=alpha, seed=seed)
        except ValueError:  # fewer usable rows than 2 x folds
            out[name] = None
    return out


def probe_model(
    model: GPT,
    probe_set: ProbeSet,
    options: EmbedOptions,
    *,
    folds: int = DEFAULT_FOLDS,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    stop: ShouldStop | None = None,
) -> dict[str, LabelScore | None]:
    """Embed the probe set with ``model`` (in eval mode; its mode is restored) and score each label."""
    was_training = model.training
    model.eval()
    try:
        x = embed_set(model, probe_set, options, dtype=dtype, stop=stop)
    finally:
        model.train(was_training)
    return score_embeddings(x, probe_set.labels, folds=folds, alpha=alpha, seed=seed)
