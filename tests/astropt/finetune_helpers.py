"""A tiny randomly initialised AION-token checkpoint (shipped codec) to fine-tune in tests."""

from __future__ import annotations

from pathlib import Path

import torch

from astropt.checkpoints import save_checkpoint
from astropt.codec import load_codec
from astropt.config import TrainConfig
from astropt.model import GPT
from astropt.training import gpt_config


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    cfg = TrainConfig.from_dict(
        {"codec": "shipped", "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 576}}
    )
    torch.manual_seed(seed)
    meta = {
        "codec": load_codec("shipped").info.to_dict(),
        "tokeniser": "aion",
        "train_config": cfg.model_dump(mode="json"),
    }
    return save_checkpoint(path, GPT(gpt_config(cfg)), meta=meta)
