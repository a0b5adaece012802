"""AstroPT on AION tokens: model, tokenisation, data, training and inference."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from astropt.model import GPT

__version__ = "0.1.0"
__all__ = ["__version__", "load_model"]


def load_model(path: str | Path, device: str | torch.device = "cpu") -> GPT:
    """A trained AstroPT model from a checkpoint directory, in eval mode.

    Imports torch on first use only, so ``import astropt`` stays light.
    """
    from astropt.checkpoints import load_model as _load_model

    return _load_model(path, device)
