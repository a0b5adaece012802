"""How hidden states ``[B, T, C]`` become one embedding per image: the one list of poolings.

The model reads the 575 input tokens it was trained on (positions 0..574 of the 24x24 token
grid, row-major); the hidden state at position ``p`` has read tokens ``0..p``.

- ``mean``: the mean over all positions;
- ``last``: the last position (it has read the whole image);
- ``centre``: the mean over the central ``k x k`` block of the token grid (the galaxy sits
  at the centre of the crop, so these positions see its light and little sky).

Imports only torch and :mod:`astropt.constants`.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from astropt.constants import TOKEN_GRID

Pool = Literal["mean", "last", "centre"]
POOLS: tuple[str, ...] = get_args(Pool)
# What a fine-tune head pools (a fixed-length sequence reduction; no centre size to choose).
HeadPool = Literal["mean", "last"]
# The default everywhere (/embed, embed jobs, live probes, the CLI): the central 4x4 tokens
# (16x16 pixels) of the last block. Of the 20 recipes docs/science.md probed, it alone beat
# same-shape random-init models on every label by more than their seeds' spread.
DEFAULT_POOL: Pool = "centre"
DEFAULT_CENTRE = 4


class PoolingError(ValueError):
    """An unknown pooling or a centre size that does not fit the token grid."""


def centre_positions(k: int, n_positions: int = TOKEN_GRID * TOKEN_GRID - 1) -> list[int]:
    """Sequence positions of the central ``k x k`` tokens (row-major grid), all ``< n_positions``."""
    if not 1 <= k < TOKEN_GRID:
        raise PoolingError(f"centre size must be in [1, {TOKEN_GRID - 1}], got {k}")
    start = (TOKEN_GRID - k) // 2
    positions = [
        r * TOKEN_GRID + c for r in range(start, start + k) for c in range(start, start + k)
    ]
    if positions[-1] >= n_positions:
        raise PoolingError(
            f"a {k}x{k} centre needs {positions[-1] + 1} positions, the input has {n_positions}"
        )
    return positions


def check_pool(pool: str, centre: int = DEFAULT_CENTRE) -> None:
    if pool not in POOLS:
        raise PoolingError(f"pooling must be one of {', '.join(POOLS)}; got {pool!r}")
    if pool == "centre":
        centre_positions(centre)


def pool_hidden(
    hidden: torch.Tensor,
    pool: str,
    centre: int = DEFAULT_CENTRE,
    positions: list[int] | None = None,
) -> torch.Tensor:
    """``[B, T, C]`` -> ``[B, C]`` by one of :data:`POOLS`. ``positions``: the sequence
    positions ``centre`` averages, where they are not those of the AION token grid (a
    patch-token model's: :func:`astropt.patches.centre_patch_positions`)."""
    check_pool(pool, centre)
    if pool == "mean":
        return hidden.mean(dim=1)
    if pool == "last":
        return hidden[:, -1, :]
    if positions is None:
        positions = centre_positions(centre, hidden.shape[1])
    index = torch.tensor(positions, device=hidden.device)
    return hidden.index_select(1, index).mean(dim=1)
