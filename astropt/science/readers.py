"""How a model reads galaxies for its embeddings: codec tokens or flux patches.

The one place that knows, for each tokenisation, what an embedding job, a probe of a
checkpoint and the live probe of a training run feed the model (the same inputs as ``/embed``):

- ``aion``: codec tokens of the 96x96 centre crop, positions 0..574 (the autoregressive shift,
  as in training: :func:`astropt.inference.pipeline.token_inputs`);
- ``patch``: the normalised patches of the centre crop in DES g, r, i, z order (all but the
  last for autoregressive models: :func:`astropt.inference.patch_pipeline.patch_inputs`).

It also says which sequence positions the ``centre`` pooling averages: for tokens the central
``k x k`` of the 24x24 grid, for patches the patches that overlap the same central ``4k x 4k``
pixels (whatever their order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from astropt.codec import CodecHandle
from astropt.config import ModelSettings
from astropt.images import centre_crop
from astropt.patches import centre_token_patches
from astropt.pooling import centre_positions


@dataclass(frozen=True)
class ModelReader:
    """The inputs of one model: ``codec`` for AION-token models, ``patch`` settings otherwise."""

    tokeniser: Literal["aion", "patch"]
    codec: CodecHandle | None = None
    patch: ModelSettings | None = None

    @classmethod
    def for_model(cls, meta: dict[str, Any], codec: CodecHandle | None) -> ModelReader:
        """The reader of a checkpoint (its ``meta``) loaded with ``codec`` (None: a patch model)."""
        if codec is not None:
            return cls("aion", codec=codec)
        from astropt.inference.patch_pipeline import patch_settings

        return cls("patch", patch=patch_settings(meta))

    def flux_inputs(self, flux: np.ndarray, bands: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Model inputs of flux ``[B, len(bands), H, W]`` (nanomaggies, H and W >= 96)."""
        crops = np.ascontiguousarray(centre_crop(flux), dtype=np.float32)
        if self.codec is not None:
            return self.token_inputs(self.codec.encode(crops, bands))
        from astropt.inference.patch_pipeline import des_order

        return self.crop_inputs(torch.from_numpy(des_order(crops, bands)))

    def held_inputs(self, held: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inputs of what a training loop holds of its data: codec tokens ``Long[B, 576]``
        (AION) or centre crops ``Float[B, 4, 96, 96]`` in the run's band order (patches)."""
        return self.token_inputs(held) if self.tokeniser == "aion" else self.crop_inputs(held)

    def token_inputs(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """AION models: inputs of codec tokens ``[B, 576]`` (int16 as the token cache holds
        them, or Long)."""
        from astropt.inference.pipeline import token_inputs

        return token_inputs(tokens.long())

    def crop_inputs(self, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        """Patch models: inputs of DES-ordered crops ``Float[B, 4, 96, 96]``."""
        from astropt.inference.patch_pipeline import patch_inputs

        assert self.patch is not None, "crop inputs are for patch-token models"
        return patch_inputs(crops, self.patch)

    def centre(self, k: int, n_positions: int) -> list[int]:
        """Sequence positions of the ``centre`` pooling of size ``k`` (AION token units)."""
        if self.tokeniser == "aion":
            return centre_positions(k, n_positions)
        assert self.patch is not None  # a patch-token model's reader has its patch settings
        return centre_token_patches(k, self.patch.patch_size, self.patch.patch_order, n_positions)

    def describe(self) -> dict[str, Any]:
        """What a catalogue's manifest and its resume key record of the inputs."""
        if self.codec is not None:
            return {"tokeniser": "aion", "codec": self.codec.info.fingerprint}
        assert self.patch is not None
        return {
            "tokeniser": "patch",
            "patch_size": self.patch.patch_size,
            "patch_order": self.patch.patch_order,
            "patch_encoder": self.patch.patch_encoder,
            "objective": self.patch.objective,
        }
