"""What the model reads and predicts, per tokenisation and objective.

A training batch is either AION tokens ``Long[B, 576]`` or flux crops ``Float[B, 4, 96, 96]``
(tokeniser ``patch``). ``ar``: inputs are positions ``0..T-2``, targets ``1..T-1``. ``mae``:
inputs and targets are the whole sequence and a seeded share of positions is masked; the mask
depends only on (seed, batch index), so a resumed run sees the very masks it would have.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from astropt.config import ModelSettings, TrainConfig
from astropt.constants import CROP
from astropt.model import GPTConfig, ModalityConfig
from astropt.patches import PATCH_MODALITY, image_to_patches, random_mask
from astropt.tokenise import MODALITY, positions_like

Pair = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor] | None]


def modality_name(m: ModelSettings) -> str:
    return MODALITY if m.tokeniser == "aion" else PATCH_MODALITY


def gpt_config(config: TrainConfig) -> GPTConfig:
    m = config.model
    if m.tokeniser == "aion":
        modality = ModalityConfig(MODALITY, input_size=m.vocab_size, vocab_size=m.vocab_size)
    else:
        size = m.patch_size * m.patch_size * 4
        modality = ModalityConfig(PATCH_MODALITY, input_size=size, patch_size=m.patch_size)
    return GPTConfig(
        block_size=m.block_size,
        n_layer=m.n_layer,
        n_head=m.n_head,
        n_embd=m.n_embd,
        n_chan=4,
        dropout=m.dropout,
        bias=m.bias,
        attn_type=m.attn_type,
        modalities=[modality],
        tokeniser=m.patch_encoder,
        objective=m.objective,
        mae_mask_ratio=m.mae_mask_ratio,
    )


def sequence(batch: torch.Tensor, m: ModelSettings) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Tokens or normalised patches of a batch, and (patches) their mean/std for display."""
    if m.tokeniser == "aion":
        return batch, {}
    patches, mean, std = image_to_patches(batch, m.patch_size, m.patch_order)
    return patches, {"mean": mean, "std": std}


def training_pair(batch: torch.Tensor, m: ModelSettings, index: int, seed: int) -> Pair:
    """(inputs, targets, masks) of one batch; ``index`` is the global batch index."""
    name = modality_name(m)
    seq, _ = sequence(batch, m)
    if m.objective == "ar":
        inputs = seq[:, :-1]
        return (
            {
                name: inputs,
                f"{name}_positions": positions_like(
                    inputs[..., 0] if inputs.dim() == 3 else inputs
                ),
            },
            {name: seq[:, 1:]},
            None,
        )
    gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
    mask = random_mask(seq.shape[0], seq.shape[1], m.mae_mask_ratio, gen).to(seq.device)
    positions = positions_like(seq[..., 0] if seq.dim() == 3 else seq)
    return {name: seq, f"{name}_positions": positions}, {name: seq}, {name: mask}


def crop_dataset(dataset: Any) -> torch.Tensor:
    """The 96x96 centre crops ``Float[N, 4, 96, 96]`` of a finite data set (patch tokeniser)."""
    crops = []
    for i in range(len(dataset)):
        flux = np.asarray(dataset[i]["flux"], dtype=np.float32)
        h, w = flux.shape[-2:]
        if h < CROP or w < CROP:
            raise ValueError(f"image {i} is {h}x{w}; patches need at least {CROP}x{CROP}")
        top, left = (h - CROP) // 2, (w - CROP) // 2
        crops.append(torch.from_numpy(flux[:, top : top + CROP, left : left + CROP].copy()))
    return torch.stack(crops)


@torch.no_grad()
def predicted_images(model: torch.nn.Module, crops: torch.Tensor, m: ModelSettings) -> torch.Tensor:
    """Teacher-forced patch predictions back in flux ``Float[B, 4, 96, 96]`` (display, metrics).

    AR: patch 0 is the input's own (nothing predicts it); MAE: every patch is masked in turn
    would be costly, so the model predicts all patches from a fixed half mask and unmasked
    patches are its reconstruction of what it saw.
    """
    from astropt.patches import patches_to_image

    seq, stats = sequence(crops.float(), m)
    inputs, _, masks = training_pair(crops.float(), m, 0, -1)
    outputs, _ = model(inputs, masks=masks)
    pred = outputs[PATCH_MODALITY].float()
    if m.objective == "ar":
        pred = torch.cat([seq[:, :1], pred], dim=1)
    image = patches_to_image(
        pred, stats["mean"], stats["std"], m.patch_size, 4, CROP, m.patch_order
    )
    return image.cpu()
