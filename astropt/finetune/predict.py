"""Label predictions for images with a fine-tuned checkpoint: what ``/predict`` computes.

The image goes through exactly the ``/embed`` path (same inputs, same pooling), then the task
head; regression outputs are de-standardised, classification outputs become class
probabilities. :class:`Prediction` is also the result's wire form (plain JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from astropt.finetune.head import decode


@dataclass
class Prediction:
    task: str
    values: dict[str, float | str]  # regression: the value; classification: the likeliest class
    probabilities: dict[str, dict[str, float]] = field(default_factory=dict)  # classification

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Prediction:
        return cls(str(raw["task"]), dict(raw["values"]), dict(raw.get("probabilities") or {}))


@torch.no_grad()
def predict(
    cubes: Sequence[Any], loaded: Any, dtype: torch.dtype | None = None
) -> list[Prediction]:
    """``loaded``: an :class:`astropt.inference.cache.LoadedModel` with a task head."""
    from astropt.checkpoints import CheckpointError
    from astropt.inference.patch_pipeline import embed_patches
    from astropt.inference.pipeline import embed

    found = loaded.head
    if found is None:
        raise CheckpointError(
            "this checkpoint has no task head: /predict needs a fine-tune job's "
            "checkpoint (POST /jobs with kind 'finetune')"
        )
    if loaded.codec is None:
        vectors = embed_patches(cubes, loaded.model, loaded.meta, found.pooling)
    else:
        vectors = embed(cubes, loaded.codec, loaded.model, found.pooling, loaded.codec_info, dtype)
    features = torch.from_numpy(np.stack([v[found.pooling] for v in vectors])).float()
    device = next(found.head.parameters()).device
    decoded = decode(found.head(features.to(device)), found.specs)
    out = []
    for row in range(len(cubes)):
        values: dict[str, float | str] = {}
        probabilities: dict[str, dict[str, float]] = {}
        for spec in found.specs:
            if spec.kind == "regression":
                values[spec.name] = float(decoded[spec.name][row])
            else:
                probs = decoded[spec.name][row]
                values[spec.name] = spec.classes[int(np.argmax(probs))]
                probabilities[spec.name] = {
                    c: float(p) for c, p in zip(spec.classes, probs, strict=True)
                }
        out.append(Prediction(found.task, values, probabilities))
    return out
