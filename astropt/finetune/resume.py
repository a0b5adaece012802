"""What a fine-tune's ``checkpoints/last`` holds so a run continues exactly where it stopped.

Beside the servable model (merged backbone + ``head.safetensors``): the trainable tensors by
name (LoRA adapters and head, the head alone, or everything in ``full`` mode) as they are and
as they were at the best validation loss, in safetensors; the optimiser state, torch's RNG,
the step, and the best step and loss in ``trainer_state.pt`` (``weights_only``); the batch
sampler's numpy RNG as JSON text. A resumed run recomputes the rest (data, frozen features,
the head's standardisation) from the same config, as the first attempt did.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from astropt.checkpoints import CheckpointError, load_trainer_state, read_meta
from astropt.finetune.config import FinetuneConfig
from astropt.run_dir import CONFIG_FILE

TRAINABLE_FILE = "trainable.safetensors"
BEST_TRAINABLE_FILE = "best_trainable.safetensors"
# Fields a resume may change: the step target (a longer run), where and how fast it runs.
FREE_ON_RESUME = frozenset({"steps", "out_dir", "device", "num_threads"})


@dataclass
class Position:
    """Where a fine-tune is: its step, the best validation loss so far and its weights."""

    step: int
    best: float  # math.inf before the first evaluation
    best_step: int
    best_state: dict[str, torch.Tensor]


def trainer_state(
    position: Position, optimizer: torch.optim.Optimizer, rng: np.random.Generator
) -> dict[str, Any]:
    return {
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": json.dumps(rng.bit_generator.state),
        "iter_num": position.step,
        "best_val_loss": position.best if math.isfinite(position.best) else None,
        "best_step": position.best_step,
    }


def extra_tensors(
    current: dict[str, torch.Tensor], position: Position
) -> dict[str, dict[str, torch.Tensor]]:
    return {TRAINABLE_FILE: current, BEST_TRAINABLE_FILE: position.best_state}


def read_position(
    last: Path, config: FinetuneConfig, optimizer: torch.optim.Optimizer, rng: np.random.Generator
) -> tuple[Position, dict[str, torch.Tensor]] | None:
    """Restore ``optimizer``, torch's and ``rng``'s state from ``last``; the position and the
    trainable tensors to load. None when there is no resumable checkpoint there."""
    if not (last / CONFIG_FILE).is_file() or not (last / TRAINABLE_FILE).is_file():
        return None
    state = load_trainer_state(last)
    if state is None or "numpy_rng" not in state:
        return None
    saved = (read_meta(last).get("finetune") or {}).get("config") or {}
    now = config.model_dump(mode="json")
    changed = sorted(k for k in now if k not in FREE_ON_RESUME and saved.get(k) != now[k])
    if changed:
        raise CheckpointError(
            f"{last} was written by a fine-tune with other settings ({', '.join(changed)} "
            "differ); resume it with its own config or use a new out_dir"
        )
    current = load_file(str(last / TRAINABLE_FILE))
    best_state = load_file(str(last / BEST_TRAINABLE_FILE))
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    rng.bit_generator.state = json.loads(state["numpy_rng"])
    best = state["best_val_loss"]
    position = Position(
        int(state["iter_num"]),
        math.inf if best is None else float(best),
        int(state["best_step"]),
        best_state,
    )
    return position, current
