"""The labelled galaxies of a fine-tune: object-level train/val/test split and model inputs.

The split is cut from the same object-id hash as training's train/val split
(:func:`astropt.data.samples.split_position`): ``test`` below ``test_fraction``, ``val`` up to
``test_fraction + val_fraction``, ``train`` above. A galaxy is in one split whatever data set
order or size it comes with; training's val galaxies (below its ``val_fraction``) fall in the
fine-tune's test split whenever ``test_fraction`` is at least as large.

Model inputs are made by the same functions ``/embed`` uses (codec tokens through
:func:`astropt.inference.pipeline.encode_cubes` / ``token_inputs``, patches through
:func:`astropt.inference.patch_pipeline.patch_inputs`); from a token data set
(``data.source: tokens``) the stored tokens are the inputs and its columns the labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from astropt.finetune.config import FinetuneConfig
from astropt.finetune.labels import (
    LabelError,
    available_labels,
    check_labels,
    derived,
    mock_columns,
    table_columns,
)

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
ENCODE_BATCH = 32


def split_of_object(object_id: str, val_fraction: float, test_fraction: float) -> Split:
    from astropt.data.samples import split_position

    u = split_position(object_id)
    return "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"


@dataclass
class LabelledData:
    object_ids: list[str]
    labels: dict[str, np.ndarray]  # raw values per label (float, or str for classes)
    splits: np.ndarray  # "train" | "val" | "test" per object
    inputs: dict[str, torch.Tensor]  # model inputs of every object, [N, ...]

    def __len__(self) -> int:
        return len(self.object_ids)

    def index(self, split: Split) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    def batch(self, rows: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        rows = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        return {k: v[rows] for k, v in self.inputs.items()}


def _usable(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isfinite(values)
    return np.array([v is not None and str(v) != "" for v in values])


def load_labelled(config: FinetuneConfig, meta: dict[str, Any], codec: Any) -> LabelledData:
    """Objects with every label present, their split and model inputs (``codec``: None for
    patch-token models)."""
    available, where = available_labels(config.label_table, config.data.source, config.data.path)
    check_labels(config.labels, available, where)
    if config.data.source == "tokens":
        ids, columns, inputs_of = _token_rows(config, codec)
    else:
        ids, columns, inputs_of = _image_rows(config, meta, codec)
    keep = np.ones(len(ids), bool)
    for name in config.labels:
        keep &= _usable(columns[name])
    picked = np.flatnonzero(keep)
    if config.max_objects is not None:
        picked = picked[: config.max_objects]
    if len(picked) < 8:
        raise LabelError(
            f"only {len(picked)} objects have every label {config.labels}; need at least 8"
        )
    object_ids = [ids[i] for i in picked]
    splits = np.array(
        [split_of_object(o, config.val_fraction, config.test_fraction) for o in object_ids]
    )
    for split in SPLITS:
        if not (splits == split).any():
            raise LabelError(
                f"the {split} split is empty ({len(picked)} objects); use more data "
                "or larger fractions"
            )
    labels = {name: columns[name][picked] for name in config.labels}
    return LabelledData(object_ids, labels, splits, inputs_of(picked))


InputsOf = Callable[[np.ndarray], dict[str, torch.Tensor]]


def _image_rows(
    config: FinetuneConfig, meta: dict[str, Any], codec: Any
) -> tuple[list[str], dict[str, np.ndarray], InputsOf]:
    """Object ids and label columns of an image source, and the model inputs of chosen rows
    (the codec encodes each picked galaxy)."""
    from astropt.data.sources import open_rows

    rows, _ = open_rows(config.data)
    ids = list(map(str, rows.keys()))
    if config.label_table:
        columns = table_columns(config.label_table, ids, config.labels)
    else:
        mock_ids, columns = mock_columns([Path(f) for f in rows.files])
        if mock_ids != ids:
            raise LabelError("the mock's truth table is not in the order of its images")

    def inputs_of(picked: np.ndarray) -> dict[str, torch.Tensor]:
        return model_inputs([rows.sample(int(i)) for i in picked], meta, codec)

    return ids, columns, inputs_of


def _token_rows(
    config: FinetuneConfig, codec: Any
) -> tuple[list[str], dict[str, np.ndarray], InputsOf]:
    """The same of a token data set: its stored tokens are the inputs (no codec runs), its
    columns (or a label table) the labels. Only a model of the data set's codec reads it."""
    from astropt.codec import check_same_codec
    from astropt.inference.pipeline import token_inputs
    from astropt.tokens.splits import open_for_training

    dataset = open_for_training(config.data.path, "default")
    if codec is None:
        raise LabelError(
            f"the token data set {config.data.path} holds codec tokens: only an AION-token "
            "model of its codec reads it, and this checkpoint reads flux patches"
        )
    check_same_codec(dataset.codec, codec.info, f"the token data set {config.data.path}")
    ids = dataset.object_ids()
    if config.label_table:
        columns = table_columns(config.label_table, ids, config.labels)
    else:
        columns = {name: dataset.column(name) for name in dataset.columns}
        columns = {
            k: v.astype(np.float64) if v.dtype.kind in "iufb" else v for k, v in columns.items()
        }
        columns.update(derived(columns))

    def inputs_of(picked: np.ndarray) -> dict[str, torch.Tensor]:
        inputs = token_inputs(dataset.take_long(picked))
        return {k: v.contiguous() for k, v in inputs.items()}

    return ids, columns, inputs_of


def model_inputs(
    samples: list[dict[str, Any]], meta: dict[str, Any], codec: Any
) -> dict[str, torch.Tensor]:
    """Inputs ``[N, ...]`` of raw samples for the checkpoint's model, as ``/embed`` makes them."""
    from astropt.images import Cube, centre_crop
    from astropt.inference.pipeline import encode_cubes, token_inputs

    if codec is None:
        from astropt.inference.patch_pipeline import patch_inputs, patch_settings

        crops = torch.from_numpy(
            np.stack([centre_crop(np.asarray(s["flux"], np.float32)) for s in samples])
        )
        return patch_inputs(crops.float(), patch_settings(meta))
    tokens = []
    for start in range(0, len(samples), ENCODE_BATCH):
        cubes = [
            Cube(np.asarray(s["flux"], np.float32), tuple(s["bands"]))
            for s in samples[start : start + ENCODE_BATCH]
        ]
        tokens.append(encode_cubes(cubes, codec)[0])
    inputs = token_inputs(torch.cat(tokens))
    return {k: v.contiguous() for k, v in inputs.items()}
