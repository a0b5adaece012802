"""A loaded codec with its identity: thread-safe encode/decode of flux cubes."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np
import torch

from astropt.codec.info import CodecInfo
from astropt.constants import CROP, DEFAULT_BANDS, TOKENS_PER_IMAGE

if TYPE_CHECKING:  # AION ships no type information: the name is Any to the checker
    from aion.codecs import ImageCodec


class CodecHandle:
    """A loaded codec plus its identity; thread-safe encode/decode of flux cubes."""

    def __init__(self, codec: ImageCodec, info: CodecInfo, device: str | torch.device = "cpu"):
        self.codec = codec.to(device).eval()
        self.info = info
        self.device = torch.device(device)
        self._lock = threading.Lock()

    def encode(
        self, flux: np.ndarray | torch.Tensor, bands: tuple[str, ...] = DEFAULT_BANDS
    ) -> torch.Tensor:
        """Flux ``[B, 4, H, W]`` (nanomaggies, H, W >= 96) -> tokens ``Long[B, 576]`` on CPU.

        The caller's array is never modified (AION preprocesses in place).
        """
        from aion.modalities import LegacySurveyImage

        x = torch.as_tensor(
            np.asarray(flux, dtype=np.float32) if isinstance(flux, np.ndarray) else flux
        )
        check_flux_shape(tuple(x.shape), bands)
        x = x.to(self.device, torch.float32, copy=True)
        if not torch.isfinite(x).all():
            raise ValueError("flux contains NaN or inf values; mask or fill them before encoding")
        with self._lock, torch.inference_mode():
            tokens = self.codec.encode(LegacySurveyImage(flux=x, bands=list(bands)))
        return tokens.long().cpu()

    def decode(
        self, tokens: np.ndarray | torch.Tensor, bands: tuple[str, ...] = DEFAULT_BANDS
    ) -> torch.Tensor:
        """Tokens ``Long[B, 576]`` -> flux ``Float[B, len(bands), 96, 96]`` on CPU."""
        tokens = torch.as_tensor(tokens)
        if tokens.ndim != 2 or tokens.shape[1] != TOKENS_PER_IMAGE:
            raise ValueError(
                f"expected tokens of shape [B, {TOKENS_PER_IMAGE}], got {list(tokens.shape)}"
            )
        with self._lock, torch.inference_mode():
            image = self.codec.decode(tokens.to(self.device, torch.long), bands=list(bands))
        return image.flux.float().cpu()


def check_flux_shape(shape: tuple[int, ...], bands: tuple[str, ...]) -> None:
    if len(shape) != 4:
        raise ValueError(f"expected flux of shape [batch, bands, H, W], got {list(shape)}")
    if shape[1] != len(bands):
        raise ValueError(f"flux has {shape[1]} bands but {len(bands)} band names were given")
    if shape[2] < CROP or shape[3] < CROP:
        raise ValueError(
            f"images must be at least {CROP}x{CROP} pixels (the codec's centre crop), "
            f"got {shape[2]}x{shape[3]}"
        )
