"""Patch tokenisation (upstream AstroPT's continuous ``images`` modality).

A flux cube ``[C, H, W]`` becomes ``[(H/p)(W/p), p*p*C]`` patches with the values of a patch in
``(p1 p2 c)`` order (pixel row, pixel column, band: the band varies fastest), each patch then
normalised to zero mean and unit standard deviation over its own values. The statistics are
kept so predictions can be mapped back to flux for display (:func:`denormalise_patches`).
An optional spiral order visits the patch grid from the centre outwards (AstroPT paper, fig. 8).
"""

from __future__ import annotations

from typing import Literal

import torch

from astropt.constants import CROP, TOKEN_GRID

PATCH_MODALITY = "images"
NORM_EPS = 1e-8
PatchOrder = Literal["raster", "spiral"]


def patchify(flux: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, (H/p)(W/p), p*p*C]`` in raster order of the patch grid."""
    b, c, h, w = flux.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"image {h}x{w} is not divisible into {patch_size}-pixel patches")
    gh, gw = h // patch_size, w // patch_size
    grid = flux.reshape(b, c, gh, patch_size, gw, patch_size)
    return grid.permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, patch_size * patch_size * c)


def unpatchify(patches: torch.Tensor, patch_size: int, n_chan: int, side: int) -> torch.Tensor:
    """Inverse of :func:`patchify` for a square ``side x side`` image."""
    b, n, _ = patches.shape
    g = side // patch_size
    if g * g != n:
        raise ValueError(
            f"{n} patches do not tile a {side}x{side} image with {patch_size}-pixel patches"
        )
    grid = patches.reshape(b, g, g, patch_size, patch_size, n_chan)
    return grid.permute(0, 5, 1, 3, 2, 4).reshape(b, n_chan, side, side)


def normalise_patches(patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-patch zero mean / unit std; returns ``(normalised, mean, std)`` (stats ``[B, N, 1]``)."""
    mean = patches.mean(dim=-1, keepdim=True)
    std = patches.std(dim=-1, keepdim=True) + NORM_EPS
    return (patches - mean) / std, mean, std


def denormalise_patches(
    normalised: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    return normalised * std + mean


def spiral_order(grid: int) -> torch.Tensor:
    """Raster indices of a ``grid x grid`` patch grid, visited from the centre outwards."""
    centre = (grid - 1) / 2
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    dy, dx = rows.flatten() - centre, cols.flatten() - centre
    ring = torch.maximum(dy.abs(), dx.abs())
    angle = torch.atan2(dy.double(), dx.double())
    # Sort by ring, then by angle within a ring (stable, so ties keep raster order).
    key = ring.double() * 10.0 + (angle + torch.pi) / (2 * torch.pi)
    return torch.argsort(key, stable=True)


def order_indices(n_patches: int, order: PatchOrder) -> torch.Tensor:
    grid = round(n_patches**0.5)
    if order == "raster":
        return torch.arange(n_patches)
    if order == "spiral":
        if grid * grid != n_patches:
            raise ValueError("spiral order needs a square patch grid")
        return spiral_order(grid)
    raise ValueError(f"patch order must be 'raster' or 'spiral', got {order!r}")


def centre_patch_positions(
    box_px: int, patch_size: int, order: PatchOrder, n_positions: int, side: int = 96
) -> list[int]:
    """Sequence positions (``< n_positions``) of the patches that overlap the central
    ``box_px x box_px`` pixels of a ``side``-pixel crop: the ``centre`` pooling of a patch
    model, over the same pixels as the AION token grid's central block."""
    grid = side // patch_size
    lo, hi = (side - box_px) // 2, (side + box_px) // 2
    inside = [i for i in range(grid) if i * patch_size < hi and (i + 1) * patch_size > lo]
    wanted = {r * grid + c for r in inside for c in inside}
    order_ = order_indices(grid * grid, order).tolist()
    positions = [p for p, raster in enumerate(order_) if raster in wanted and p < n_positions]
    if not positions:
        raise ValueError(
            f"no patch of the central {box_px} px is among the {n_positions} the model reads"
        )
    return sorted(positions)


def centre_token_patches(k: int, patch_size: int, order: PatchOrder, n_positions: int) -> list[int]:
    """The ``centre`` pooling of size ``k`` (counted in AION tokens, as for a token model) of a
    patch model: the patches over the same central ``4k x 4k`` pixels of the crop."""
    return centre_patch_positions(
        k * (CROP // TOKEN_GRID), patch_size, order, n_positions, side=CROP
    )


def image_to_patches(
    flux: torch.Tensor, patch_size: int, order: PatchOrder = "raster"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[B, C, H, W]`` flux -> normalised patches in ``order`` with their mean and std."""
    patches = patchify(flux.float(), patch_size)
    patches = patches[:, order_indices(patches.shape[1], order)]
    return normalise_patches(patches)


def patches_to_image(
    normalised: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    patch_size: int,
    n_chan: int,
    side: int,
    order: PatchOrder = "raster",
) -> torch.Tensor:
    """Inverse of :func:`image_to_patches` (display: predictions back to flux)."""
    patches = denormalise_patches(normalised, mean, std)
    restored = torch.empty_like(patches)
    restored[:, order_indices(patches.shape[1], order)] = patches
    return unpatchify(restored, patch_size, n_chan, side)


def random_mask(
    batch: int, length: int, ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``Bool[B, T]`` with exactly ``round(ratio * T)`` (at least one) masked positions per row."""
    n_masked = max(1, min(length, round(ratio * length)))
    scores = torch.rand(batch, length, generator=generator)
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return ranks < n_masked
