"""Grow a trained codec into a wider one that computes (almost) the same function.

Net2Net-style widening (Chen, Goodfellow & Shlens 2016) for AION's ``MagVitAE`` image
codec: every channel of the wider network is a copy of a channel of the trained one;
a layer that reads a copied channel splits the original weight between the copies, with
random fractions that sum to one. The wider codec therefore starts from the trained
one's reconstructions instead of from noise, and the unequal split lets the copies
drift apart as training continues (equal halves would receive identical gradients and
stay copies for ever).

Exact for every layer but one: the ``LayerNorm`` before quantisation normalises over
channels, so its mean and variance see the copied channels twice. Its output is
refitted by least squares on a batch of real inputs (:func:`refit_pre_quant`), which
restores the latents to within a small fraction of one FSQ level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from astropt.codec_training.objective import encoder_features

if TYPE_CHECKING:  # AION ships no type information: these names are Any to the checker
    from aion.codecs import ImageCodec
    from aion.codecs.modules.magvit import ResidualUnit


@dataclass
class ChannelMap:
    """New channel ``j`` copies old channel ``source[j]``; ``share[j]`` is its part of it."""

    source: np.ndarray
    share: np.ndarray

    @classmethod
    def identity(cls, n: int) -> ChannelMap:
        return cls(np.arange(n), np.ones(n))

    @classmethod
    def widen(cls, n_old: int, n_new: int, rng: np.random.Generator) -> ChannelMap:
        """All ``n_old`` channels, then random ones again until there are ``n_new``."""
        if n_new < n_old:
            raise ValueError(f"cannot narrow {n_old} channels to {n_new}")
        n_extra = n_new - n_old
        rounds = [rng.permutation(n_old) for _ in range(-(-n_extra // n_old))]
        extra = np.concatenate(rounds)[:n_extra] if rounds else np.array([], dtype=int)
        return cls(np.concatenate([np.arange(n_old), extra]).astype(int), np.ones(n_new)).fresh(rng)

    def fresh(self, rng: np.random.Generator) -> ChannelMap:
        """Same copies, new random shares (each reading layer gets its own split).

        Unequal shares are what lets the copies drift apart in training; equal halves
        would give them identical gradients for ever.
        """
        counts = np.bincount(self.source)
        raw = rng.uniform(0.5, 1.5, size=len(self.source))
        totals = np.bincount(self.source, weights=raw)
        return ChannelMap(
            self.source, np.where(counts[self.source] > 1, raw / totals[self.source], 1.0)
        )

    def expand(self, factor: int) -> ChannelMap:
        """The map of a ``(c p)`` channel axis, as in the pixel-shuffle upsampler."""
        source = (self.source[:, None] * factor + np.arange(factor)[None, :]).reshape(-1)
        return ChannelMap(source, np.repeat(self.share, factor))


@torch.no_grad()
def _copy_conv(old: nn.Conv2d, new: nn.Conv2d, inp: ChannelMap, out: ChannelMap) -> None:
    w = old.weight[torch.as_tensor(out.source)][:, torch.as_tensor(inp.source)]
    share = torch.as_tensor(inp.share, dtype=w.dtype).view(1, -1, *([1] * (w.dim() - 2)))
    new.weight.copy_(w * share)
    if old.bias is not None:
        assert new.bias is not None  # same architecture, only wider
        new.bias.copy_(old.bias[torch.as_tensor(out.source)])


def _residual_unit(
    old: ResidualUnit, new: ResidualUnit, stream: ChannelMap, rng: np.random.Generator
) -> None:
    inner = ChannelMap.widen(old.net[0].conv.out_channels, new.net[0].conv.out_channels, rng)
    _copy_conv(old.net[0].conv, new.net[0].conv, stream.fresh(rng), inner)
    _copy_conv(old.net[2], new.net[2], inner.fresh(rng), stream)
    se_old, se_new = old.net[4], new.net[4]
    _copy_conv(se_old.to_k, se_new.to_k, stream.fresh(rng), ChannelMap.identity(1))
    hidden = ChannelMap.widen(se_old.net[0].out_channels, se_new.net[0].out_channels, rng)
    _copy_conv(se_old.net[0], se_new.net[0], stream.fresh(rng), hidden)
    _copy_conv(se_old.net[2], se_new.net[2], hidden.fresh(rng), stream)


def _residual_stack(
    old: nn.Sequential | ResidualUnit,
    new: nn.Sequential | ResidualUnit,
    stream: ChannelMap,
    rng: np.random.Generator,
) -> None:
    units = zip(old, new, strict=True) if isinstance(old, nn.Sequential) else [(old, new)]
    for unit_old, unit_new in units:
        _residual_unit(unit_old, unit_new, stream, rng)


@torch.no_grad()
def widen_codec(old: ImageCodec, new: ImageCodec, seed: int = 0) -> ChannelMap:
    """Fill ``new`` (an ImageCodec with larger ``hidden_dims``) from the trained ``old``.

    Returns the channel map of the latent features (the input of ``pre_quant_proj``).
    """
    rng = np.random.default_rng(seed)
    a, b = old.model, new.model
    n_bands_proj = a.conv_in.conv.in_channels
    same_proj = ChannelMap.identity(n_bands_proj)
    for name in ("subsample_in", "subsample_out"):
        getattr(new, name).load_state_dict(getattr(old, name).state_dict())
    enc_a, enc_b = list(a.encoder_layers), list(b.encoder_layers)
    dec_a, dec_b = list(a.decoder_layers), list(b.decoder_layers)
    if len(enc_a) != len(enc_b) or len(dec_a) != len(dec_b):
        raise ValueError("only the width may differ: n_compressions must match")

    stream = ChannelMap.widen(a.conv_in.conv.out_channels, b.conv_in.conv.out_channels, rng)
    _copy_conv(a.conv_in.conv, b.conv_in.conv, same_proj, stream)
    for la, lb in zip(enc_a, enc_b, strict=True):
        conv_a = getattr(la, "conv", None)
        if isinstance(la, nn.Sequential) and isinstance(la[1], nn.LayerNorm):
            lb[1].weight.copy_(la[1].weight[torch.as_tensor(stream.source)])
            lb[1].bias.copy_(la[1].bias[torch.as_tensor(stream.source)])
        elif isinstance(conv_a, nn.Conv2d):  # down-sampling or the final 7x7 convolution
            wider = (
                stream
                if conv_a.out_channels == conv_a.in_channels
                else ChannelMap.widen(conv_a.out_channels, lb.conv.out_channels, rng)
            )
            _copy_conv(conv_a, lb.conv, stream.fresh(rng), wider)
            stream = wider
        else:
            _residual_stack(la, lb, stream, rng)
    latent = stream
    n_latent = ChannelMap.identity(old.pre_quant_proj.out_channels)
    _copy_conv(old.pre_quant_proj, new.pre_quant_proj, latent.fresh(rng), n_latent)
    _copy_conv(old.post_quant_proj, new.post_quant_proj, n_latent, latent)

    stream = latent
    for la, lb in zip(dec_a, dec_b, strict=True):
        if (
            hasattr(la, "net") and isinstance(la.net[0], nn.Conv2d) and len(la.net) == 3
        ):  # upsampler
            conv_a, conv_b = la.net[0], lb.net[0]
            wider = ChannelMap.widen(conv_a.out_channels // 4, conv_b.out_channels // 4, rng)
            _copy_conv(conv_a, conv_b, stream.fresh(rng), wider.expand(4))
            stream = wider
        elif isinstance(getattr(la, "conv", None), nn.Conv2d):
            _copy_conv(la.conv, lb.conv, stream.fresh(rng), stream)
        else:
            _residual_stack(la, lb, stream, rng)
    _copy_conv(a.conv_out.conv, b.conv_out.conv, stream.fresh(rng), same_proj)
    return latent


@torch.no_grad()
def refit_pre_quant(
    old: ImageCodec, new: ImageCodec, latent: ChannelMap, noisy: torch.Tensor, bands: list[str]
) -> dict[str, float]:
    """Least-squares refit of ``new.pre_quant_proj`` so its latents match ``old``'s on ``noisy``.

    Copies of a channel are identical after the LayerNorm, so the fit is made on one
    column per original channel and each solved weight split again by ``latent``'s shares.
    Returns the RMS latent difference (FSQ-input units) before and after the refit.
    """
    _, z_old = encoder_features(old, noisy, bands)
    h_new, z_new = encoder_features(new, noisy, bands)
    before = float((z_new - z_old).pow(2).mean().sqrt())
    n_old = int(latent.source.max()) + 1
    first = torch.as_tensor(np.unique(latent.source, return_index=True)[1])
    feats = h_new[:, first].transpose(0, 1).reshape(n_old, -1).T.double()
    design = torch.cat([feats, torch.ones(len(feats), 1, dtype=feats.dtype)], dim=1)
    target = z_old.transpose(0, 1).reshape(z_old.shape[1], -1).T.double()
    solution = torch.linalg.lstsq(design, target, driver="gelsd").solution  # [n_old + 1, latent]
    weight = solution[:-1][torch.as_tensor(latent.source)] * torch.as_tensor(latent.share)[:, None]
    proj = new.pre_quant_proj
    proj.weight.copy_(weight.T.reshape(proj.weight.shape).to(proj.weight.dtype))
    proj.bias.copy_(solution[-1].to(proj.bias.dtype))
    _, z_fit = encoder_features(new, noisy, bands)
    after = float((z_fit - z_old).pow(2).mean().sqrt())
    return {"latent_rms_before_refit": before, "latent_rms_after_refit": after}
