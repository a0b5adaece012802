"""Reconstruction and embedding for patch-token models (no codec).

``predict``: teacher-forced prediction of every patch (AR: patches 1..N-1 from their
predecessors, patch 0 is the input's own; MAE: nothing masked, the model's reconstruction).
``masked``: a seeded ``1 - keep_fraction`` of the patches is hidden behind the mask token and
filled in (MAE models). Predicted patches are un-normalised with each input patch's own mean
and std, then reassembled into flux ``[4, 96, 96]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from astropt.config import ModelSettings
from astropt.constants import CROP, DEFAULT_BANDS
from astropt.images import Cube
from astropt.inference.pipeline import (
    OptionsError,
    Reconstruction,
    ReconstructOptions,
    centre_crop,
    check_pooling,
)
from astropt.patches import PATCH_MODALITY, centre_token_patches, patches_to_image, random_mask
from astropt.pooling import DEFAULT_CENTRE, DEFAULT_POOL
from astropt.sequences import sequence

if TYPE_CHECKING:
    from astropt.model import GPT


def patch_settings(meta: dict[str, Any]) -> ModelSettings:
    return ModelSettings.model_validate(meta["train_config"]["model"])


def des_order(crops: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    """``[B, len(bands), h, w]`` -> float32 ``[B, 4, h, w]`` in DES g, r, i, z order, what a
    patch model reads; a band the input lacks is zero (the model sees it so)."""
    out = np.zeros((crops.shape[0], len(DEFAULT_BANDS), *crops.shape[-2:]), np.float32)
    for i, band in enumerate(bands):
        out[:, DEFAULT_BANDS.index(band)] = crops[:, i]
    return out


def _full_crops(cubes: Sequence[Cube]) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Crops in DES g, r, i, z order (:func:`des_order`), and each input's own crop."""
    own = [centre_crop(cube.flux).astype(np.float32) for cube in cubes]
    full = [des_order(crop[None], cube.bands)[0] for crop, cube in zip(own, cubes, strict=True)]
    return torch.from_numpy(np.stack(full)), own


@torch.no_grad()
def reconstruct_patches(
    cubes: Sequence[Cube], model: GPT, meta: dict[str, Any], options: ReconstructOptions
) -> list[Reconstruction]:
    m = patch_settings(meta)
    if options.mode not in ("predict", "masked"):
        raise OptionsError(
            f"a patch-token model supports modes 'predict' and 'masked'; got {options.mode!r}"
        )
    if options.mode == "masked" and m.objective != "mae":
        raise OptionsError("mode 'masked' needs a masked-autoencoder model (objective 'mae')")
    device = next(model.parameters()).device
    crops, own = _full_crops(cubes)
    seq, stats = sequence(crops, m)
    positions = torch.arange(seq.shape[1]).expand(seq.shape[0], -1)
    masks = None
    if options.mode == "masked":
        gen = torch.Generator().manual_seed(options.seed or 0)
        masks = {
            PATCH_MODALITY: random_mask(seq.shape[0], seq.shape[1], 1 - options.keep_fraction, gen)
        }
    if m.objective == "ar":
        inputs = {PATCH_MODALITY: seq[:, :-1], f"{PATCH_MODALITY}_positions": positions[:, :-1]}
    else:
        inputs = {PATCH_MODALITY: seq, f"{PATCH_MODALITY}_positions": positions}
    inputs = {k: v.to(device) for k, v in inputs.items()}
    if masks is not None:
        masks = {k: v.to(device) for k, v in masks.items()}
    outputs, _ = model(inputs, masks=masks)
    pred = outputs[PATCH_MODALITY].float().cpu()
    if m.objective == "ar":
        pred = torch.cat([seq[:, :1], pred], dim=1)
    if masks is not None:  # the visible patches are shown as they were
        keep = ~masks[PATCH_MODALITY].cpu()
        pred[keep] = seq[keep]
    images = patches_to_image(
        pred, stats["mean"], stats["std"], m.patch_size, 4, CROP, m.patch_order
    ).numpy()
    results = []
    for i, cube in enumerate(cubes):
        index = [DEFAULT_BANDS.index(b) for b in cube.bands]
        results.append(
            Reconstruction(
                mode=options.mode,
                bands=cube.bands,
                original=own[i],
                codec=None,
                model=images[i],
                tokens=np.zeros(0, np.int64),
                model_tokens=None,
                token_accuracy=None,
                mse=float(np.mean((images[i][index].astype(np.float64) - own[i]) ** 2)),
                codec_mse=float("nan"),
                warnings=list(cube.warnings),
            )
        )
    return results


def patch_inputs(crops: torch.Tensor, m: ModelSettings) -> dict[str, torch.Tensor]:
    """What an embedding reads of flux crops ``[B, 4, 96, 96]`` in DES g, r, i, z order: the
    normalised patches (all but the last for AR models). ``/embed`` and fine-tuning share it."""
    seq, _ = sequence(crops, m)
    if m.objective == "ar":
        seq = seq[:, :-1]
    positions = torch.arange(seq.shape[1]).expand(seq.shape[0], -1)
    return {PATCH_MODALITY: seq, f"{PATCH_MODALITY}_positions": positions}


@torch.no_grad()
def embed_patches(
    cubes: Sequence[Cube],
    model: GPT,
    meta: dict[str, Any],
    pooling: str = DEFAULT_POOL,
    centre: int = DEFAULT_CENTRE,
) -> list[dict[str, np.ndarray]]:
    """Per image ``{pooling: float32[C]}``; ``centre`` counts AION tokens (the same pixels as a
    token model's centre pooling of that size)."""
    check_pooling(pooling, centre)
    crops, _ = _full_crops(cubes)
    device = next(model.parameters()).device
    m = patch_settings(meta)
    inputs = patch_inputs(crops, m)
    positions = None
    if pooling == "centre":
        try:
            positions = centre_token_patches(
                centre, m.patch_size, m.patch_order, inputs[PATCH_MODALITY].shape[1]
            )
        except ValueError as exc:
            raise OptionsError(str(exc)) from exc
    pooled = model.embed(
        {k: v.to(device) for k, v in inputs.items()},
        pooling=pooling,
        centre=centre,
        positions=positions,
    )
    if not isinstance(pooled, dict):
        pooled = {pooling: pooled}
    return [
        {k: v[row].float().cpu().numpy() for k, v in pooled.items()} for row in range(len(cubes))
    ]
