"""The codec trainer's objective: AION's preprocessing made differentiable, the losses
and the guards against codebook collapse (used by :mod:`astropt.codec_training.trainer`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # AION ships no type information: the name is Any to the checker
    from aion.codecs import ImageCodec


def compress(codec: ImageCodec, flux: torch.Tensor, bands: list[str], clamp: bool) -> torch.Tensor:
    """AION's encode preprocessing on a *copy* (AION writes in place)."""
    x = codec.center_crop(flux.clone())
    if clamp:
        x = codec.clamp(x, bands)
    x = codec.rescaler.forward(x, codec._get_survey(bands))
    return codec._range_compress(x)


def compressed_slope(codec: ImageCodec, flux: torch.Tensor) -> torch.Tensor:
    """d(range compression)/d(flux) at ``flux``: maps a flux sigma into compressed space."""
    c = codec.range_compression_factor
    return codec.mult_factor / torch.sqrt(1.0 + (flux / c) ** 2)


def encoder_features(
    codec: ImageCodec, noisy: torch.Tensor, bands: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy flux -> (encoder output [B, hidden, 24, 24], pre-quant latents [B, 5, 24, 24])."""
    x = compress(codec, noisy, bands, clamp=True)
    x, mask = codec.image_padder.forward(x, bands)
    h = codec.encoder(codec.subsample_in(x, mask))
    return h, codec.pre_quant_proj(h)


def forward_compressed(
    codec: ImageCodec, noisy: torch.Tensor, bands: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy flux -> (reconstruction in compressed space [B, bands, 96, 96], pre-quant latents).

    Same arithmetic as ``decode(encode(x))`` but with the straight-through quantiser so
    gradients reach the encoder.
    """
    _, z = encoder_features(codec, noisy, bands)
    q = codec.quantizer.quantize(z)
    out = codec.decoder(codec.post_quant_proj(q))
    full = torch.ones(
        (out.shape[0], codec.image_padder.nbands), dtype=torch.bool, device=out.device
    )
    out = codec.subsample_out(out, full)
    return codec.image_padder.backward(out, bands), z


def weighted_loss(
    codec: ImageCodec,
    pred_c: torch.Tensor,
    truth: torch.Tensor,
    sigma: torch.Tensor,
    bands: list[str],
    relative_floor: float,
    huber_delta: float = 0.0,
) -> torch.Tensor:
    """Inverse-variance weighted squared error in compressed space (~chi^2 in sigma units).

    With ``huber_delta`` > 0, residuals beyond that many sigma count linearly (Huber, scaled
    so small residuals still give exactly chi^2): otherwise the few very bright pixels of
    stars and bright cores outweigh the sky and faint outskirts by orders of magnitude early
    in training, and the codec learns the faint majority (and a bias-free sky) slowly.
    """
    truth = codec.center_crop(truth)
    target_c = compress(codec, truth, bands, clamp=False)
    sigma_c = compressed_slope(codec, truth) * sigma[:, :, None, None]
    # For x >> compression factor, d(compressed) = mult * factor * dx / x: a floor on the
    # relative error keeps the brightest cores from swamping every other pixel.
    floor_c = codec.mult_factor * codec.range_compression_factor * relative_floor
    resid = (pred_c - target_c) / torch.sqrt(sigma_c**2 + floor_c**2)
    if huber_delta > 0:
        return 2.0 * torch.nn.functional.huber_loss(
            resid, torch.zeros_like(resid), delta=huber_delta
        )
    return resid.pow(2).mean()


def flux_loss(
    codec: ImageCodec,
    pred_c: torch.Tensor,
    truth: torch.Tensor,
    sigma: torch.Tensor,
    relative_floor: float,
) -> torch.Tensor:
    """Chi^2 of the flux summed over the crop, per band, scaled to the per-pixel loss.

    The sum's noise is sigma * 96 (96x96 independent sky pixels); dividing by the number of
    pixels makes weight 1 count a uniform offset of the sky exactly as the pixel chi^2 does.
    The pixel loss hardly sees a bias of a hundredth of a sigma, but over 9,216 pixels it is
    a 2% flux error for a galaxy at S/N 50, the kind ``codec evaluate`` measures.
    """
    recon = codec._reverse_range_compress(pred_c)  # DES bands: the survey rescale is 1
    truth = codec.center_crop(truth)
    n_pix = truth.shape[-1] * truth.shape[-2]
    flux_true = truth.sum(dim=(2, 3))
    noise = torch.sqrt((sigma * n_pix**0.5) ** 2 + (relative_floor * flux_true) ** 2)
    chi = (recon.sum(dim=(2, 3)) - flux_true) / noise
    return chi.pow(2).mean() / n_pix


def latent_range_penalty(z: torch.Tensor, bound: float = 2.5) -> torch.Tensor:
    """Keeps pre-quant values where FSQ's tanh is not saturated (saturation = dead codes)."""
    return torch.relu(z.abs() - bound).pow(2).mean()


def fsq_codes(codec: ImageCodec, z: torch.Tensor) -> torch.Tensor:
    return codec.quantizer.encode(z.reshape(z.shape[0], z.shape[1], -1))


def _latent_std(z: torch.Tensor) -> torch.Tensor:
    return z.detach().transpose(0, 1).reshape(z.shape[1], -1).std(dim=1)


def respread_latents(codec: ImageCodec, z: torch.Tensor, min_std: float = 0.15) -> list[int]:
    """Collapse remedy: re-widen pre-quant channels whose spread no longer crosses FSQ levels."""
    std = _latent_std(z)
    fixed = []
    with torch.no_grad():
        for ch in torch.nonzero(std < min_std).flatten().tolist():
            codec.pre_quant_proj.weight[ch] *= min(3.0, 0.5 / max(float(std[ch]), 1e-3))
            fixed.append(ch)
    return fixed


@torch.no_grad()
def spread_init(
    codec: ImageCodec, noisy: torch.Tensor, bands: list[str], target_std: float = 1.0
) -> None:
    """Data-dependent init: pre-quant channels start with unit spread, i.e. across all FSQ levels.

    With PyTorch's default init they start at ~0.2, where nearly every token rounds to the
    same level of every channel and training can settle into a handful of codes.
    """
    _, z = forward_compressed(codec, noisy, bands)
    scale = target_std / _latent_std(z).clamp_min(1e-3)
    codec.pre_quant_proj.weight.mul_(scale[:, None, None, None])
    codec.pre_quant_proj.bias.mul_(scale)
