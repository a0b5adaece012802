"""The labelled galaxies of a fine-tune: object-level train/val/test split and model inputs.

The split is cut from the same object-id hash as training's train/val split
(:func:`astropt.data.samples.split_position`): ``test`` below ``test_fraction``, ``val`` up to
``test_fraction + val_fraction``, ``train`` above. A galaxy is in one split whatever data set
order or size it comes with; training's val galaxies (below its ``val_fraction``) fall in the
fine-tune's test split whenever ``test_fraction`` is at least as large.

Model inputs are made by the same functions ``/embed`` uses (codec tokens through
:func:`astropt.inference.pipeline.encode_cubes` / ``token_inputs``, patches through
:func:`astropt.inference.patch_pipeline.patch_inputs`).
"""

from __future__ import annotations

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
    from astropt.data.sources import open_rows

    available, where = available_labels(config.label_table, config.data.source)
    check_labels(config.labels, available, where)
    rows, _ = open_rows(config.data)
    ids = list(map(str, rows.keys()))
    if config.label_table:
        columns = table_columns(config.label_table, ids, config.labels)
    else:
        mock_ids, columns = mock_columns([Path(f) for f in rows.files])
        if mock_ids != ids:
            raise LabelError("the mock's truth table is not in the order of its images")
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
    samples = [rows.sample(int(i)) for i in picked]
    return LabelledData(object_ids, labels, splits, model_inputs(samples, meta, codec))


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
