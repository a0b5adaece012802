"""The task head: pooled hidden states -> label predictions, and how labels are encoded.

Regression labels are standardised with the training split's mean and std (the head predicts
z-scores, the loss is their MSE, predictions are de-standardised); a classification label gets
one logit per distinct value (cross-entropy). One head serves every label of a fine-tune: its
outputs are the labels' slices, in order. The head's weights are ``head.safetensors`` in the
checkpoint directory, its description ``finetune.head`` / ``finetune.labels`` in ``config.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

from astropt.run_dir import HEAD_FILE


@dataclass
class LabelSpec:
    name: str
    kind: Literal["regression", "classification"]
    mean: float = 0.0  # regression: the training split's mean and std
    std: float = 1.0
    classes: list[str] = field(default_factory=list)  # classification: logit order

    @property
    def width(self) -> int:
        return 1 if self.kind == "regression" else len(self.classes)


def label_specs(task: str, labels: dict[str, np.ndarray], train: np.ndarray) -> list[LabelSpec]:
    specs = []
    for name, values in labels.items():
        if task == "regression":
            if values.dtype.kind != "f":
                raise ValueError(f"label {name!r} is not numeric; use task 'classification'")
            mean, std = float(values[train].mean()), float(values[train].std())
            specs.append(LabelSpec(name, "regression", mean, std if std > 0 else 1.0))
        else:
            classes = sorted({_class_name(v) for v in values})
            if len(classes) < 2:
                raise ValueError(
                    f"label {name!r} has a single value ({classes}); nothing to classify"
                )
            if len(classes) > 1000:
                raise ValueError(
                    f"label {name!r} has {len(classes)} distinct values; use task 'regression'"
                )
            specs.append(LabelSpec(name, "classification", classes=classes))
    return specs


def _class_name(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def encode_targets(specs: list[LabelSpec], labels: dict[str, np.ndarray]) -> torch.Tensor:
    """``Float[N, n_labels]``: z-scores (regression) or class indices (classification)."""
    columns = []
    for spec in specs:
        values = labels[spec.name]
        if spec.kind == "regression":
            columns.append((values.astype(np.float64) - spec.mean) / spec.std)
        else:
            where = {c: i for i, c in enumerate(spec.classes)}
            columns.append(np.array([where[_class_name(v)] for v in values], np.float64))
    return torch.tensor(np.stack(columns, axis=1), dtype=torch.float32)


def head_loss(outputs: torch.Tensor, targets: torch.Tensor, specs: list[LabelSpec]) -> torch.Tensor:
    """Mean over labels of MSE (z-scores) or cross-entropy."""
    losses, start = [], 0
    for j, spec in enumerate(specs):
        part = outputs[:, start : start + spec.width].float()
        if spec.kind == "regression":
            losses.append(F.mse_loss(part[:, 0], targets[:, j]))
        else:
            losses.append(F.cross_entropy(part, targets[:, j].long()))
        start += spec.width
    return torch.stack(losses).mean()


def decode(outputs: torch.Tensor, specs: list[LabelSpec]) -> dict[str, np.ndarray]:
    """Per label: de-standardised values ``[N]``, or class probabilities ``[N, n_classes]``."""
    out, start = {}, 0
    for spec in specs:
        part = outputs[:, start : start + spec.width].float()
        if spec.kind == "regression":
            out[spec.name] = (part[:, 0] * spec.std + spec.mean).double().cpu().numpy()
        else:
            out[spec.name] = part.softmax(dim=-1).double().cpu().numpy()
        start += spec.width
    return out


class TaskHead(nn.Module):
    """Standardise the features (``shift``/``scale``: the frozen model's training-split mean and
    std), then Linear, or Linear -> GELU -> Linear with ``hidden`` units."""

    shift: torch.Tensor  # buffers (register_buffer)
    scale: torch.Tensor

    def __init__(self, n_in: int, n_out: int, hidden: int = 0):
        super().__init__()
        self.n_in, self.n_out, self.hidden = n_in, n_out, hidden
        self.register_buffer("shift", torch.zeros(n_in))
        self.register_buffer("scale", torch.ones(n_in))
        if hidden:
            self.net: nn.Module = nn.Sequential(
                nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, n_out)
            )
        else:
            self.net = nn.Linear(n_in, n_out)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.shift) / self.scale)

    @torch.no_grad()
    def standardise_with(self, features: torch.Tensor) -> None:
        self.shift.copy_(features.mean(dim=0))
        self.scale.copy_(features.std(dim=0).clamp_min(1e-6))

    def describe(self) -> dict[str, int]:
        return {"n_in": self.n_in, "n_out": self.n_out, "hidden": self.hidden}


def head_for(n_in: int, specs: list[LabelSpec], hidden: int) -> TaskHead:
    return TaskHead(n_in, sum(s.width for s in specs), hidden)


def specs_to_meta(specs: list[LabelSpec]) -> list[dict[str, Any]]:
    return [asdict(s) for s in specs]


def specs_from_meta(raw: list[dict[str, Any]]) -> list[LabelSpec]:
    return [LabelSpec(**r) for r in raw]


@dataclass
class LoadedHead:
    head: TaskHead
    specs: list[LabelSpec]
    pooling: str
    task: str


def load_head(
    checkpoint: Path, meta: dict[str, Any], device: torch.device | str = "cpu"
) -> LoadedHead:
    """The task head of a fine-tuned checkpoint (``meta`` is its ``config.json``)."""
    from safetensors.torch import load_model

    from astropt.checkpoints import CheckpointError

    info = meta.get("finetune")
    if not isinstance(info, dict):
        raise CheckpointError(
            f"checkpoint {checkpoint.name} is not a fine-tuned model (no task head)"
        )
    shape = info["head"]
    head = TaskHead(int(shape["n_in"]), int(shape["n_out"]), int(shape["hidden"]))
    weights = checkpoint / HEAD_FILE
    try:
        load_model(head, str(weights), strict=True)
    except Exception as exc:
        raise CheckpointError(
            f"{weights} is missing or does not match finetune.head: {exc}"
        ) from exc
    return LoadedHead(
        head.to(device).eval(), specs_from_meta(info["labels"]), info["pooling"], info["task"]
    )
