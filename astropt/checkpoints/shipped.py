"""The small pretrained AstroPT shipped inside the package (``astropt/shipped_model/``).

Trained on the embedded GalSim mock with the shipped codec (see its MODEL_CARD.md), so the
first reconstruction a new user makes shows a galaxy, offline. It is an ordinary checkpoint
directory: ``load_model(SHIPPED_MODEL_DIR)`` works too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astropt.checkpoints.io import WEIGHTS_FILE, CheckpointError, load_checkpoint

SHIPPED_MODEL_DIR = Path(__file__).resolve().parents[1] / "shipped_model"
EVALUATION_FILE = "evaluation.json"
HELD_OUT_SEED = 20261124  # mock galaxies of this seed were never seen in training (seed 0)
SIZE_BUDGET_BYTES = 15 * 1024 * 1024


def shipped_model_fingerprint(directory: Path = SHIPPED_MODEL_DIR) -> str:
    """sha256 of the weights file: what job records and responses name the model by."""
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"the shipped model is missing from this installation ({weights})")
    return "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()


def shipped_model_info(directory: Path = SHIPPED_MODEL_DIR) -> dict[str, Any]:
    """The evaluation record written when the model was shipped (figures of the model card)."""
    return json.loads((directory / EVALUATION_FILE).read_text())


def load_shipped_model(
    device: str | torch.device = "cpu",
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The shipped model (eval mode) and its checkpoint meta; no network access."""
    if not SHIPPED_MODEL_DIR.is_dir():
        raise CheckpointError(
            f"the shipped model is missing from this installation ({SHIPPED_MODEL_DIR})"
        )
    return load_checkpoint(SHIPPED_MODEL_DIR, device)


@torch.no_grad()
def teacher_forced_predictions(
    model: torch.nn.Module, tokens: torch.Tensor, batch_size: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted, target) next tokens, each ``[N, T-1]``: the model's argmax given the true prefix."""
    from astropt.tokenise import MODALITY, shift_for_training

    device = next(model.parameters()).device
    predicted, targets = [], []
    for start in range(0, len(tokens), batch_size):
        inputs, target = shift_for_training(tokens[start : start + batch_size].to(device))
        logits, _ = model(inputs)
        predicted.append(logits[MODALITY].argmax(-1).cpu())
        targets.append(target[MODALITY].cpu())
    return torch.cat(predicted), torch.cat(targets)


def teacher_forced_accuracy(
    model: torch.nn.Module, tokens: torch.Tensor, batch_size: int = 8
) -> float:
    """Fraction of next tokens the model predicts exactly (argmax) given the true prefix."""
    predicted, targets = teacher_forced_predictions(model, tokens, batch_size)
    return float((predicted == targets).float().mean()) if targets.numel() else 0.0


def held_out_tokens(
    codec_spec: str = "shipped", n: int = 32, seed: int = HELD_OUT_SEED
) -> torch.Tensor:
    """Tokens of ``n`` mock galaxies from a seed the shipped model never trained on."""
    from astropt.codec import load_codec
    from astropt.data.mock import simulate

    flux = np.stack([np.asarray(g["flux"], dtype=np.float32) for g in simulate(n, seed=seed)])
    return load_codec(codec_spec).encode(flux)
