"""Growing a trained codec into a wider one (astropt.codec_training.grow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from astropt.codec import (
    CodecHandle,
    CodecInfo,
    build_codec,
    codec_config,
    fingerprint,
    load_codec,
    random_codec,
)
from astropt.codec_training.evaluate import _mock_batches
from astropt.codec_training.grow import ChannelMap, refit_pre_quant, widen_codec
from astropt.codec_training.objective import encoder_features
from astropt.codec_training.trainer import warm_start
from astropt.constants import DEFAULT_BANDS

BANDS = list(DEFAULT_BANDS)


def _mock_flux(n: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(next(_mock_batches(n, seed, batch=n))[0].astype(np.float32))


def test_channel_map_copies_every_channel_and_splits_it_into_shares_summing_to_one() -> None:
    rng = np.random.default_rng(1)
    m = ChannelMap.widen(16, 40, rng)  # more than one extra copy of some channels
    assert len(m.source) == 40 and set(m.source.tolist()) == set(range(16))
    assert np.allclose(np.bincount(m.source, weights=m.share), 1.0)
    copied = np.bincount(m.source)[m.source] > 1
    assert copied.sum() == 40  # 24 extra channels over 16 originals: every one copied
    assert np.ptp(m.share[copied]) > 0.05  # unequal, so the copies can drift apart
    up = m.expand(4)
    assert up.source[4 * 20 : 4 * 21].tolist() == [4 * m.source[20] + k for k in range(4)]
    with pytest.raises(ValueError, match="narrow"):
        ChannelMap.widen(16, 8, rng)


@torch.no_grad()
def test_widened_codec_decodes_the_same_and_encodes_the_same_tokens() -> None:
    old = random_codec(3, hidden_dims=32).eval()
    gen = torch.Generator().manual_seed(0)
    for module in old.modules():  # wake the squeeze-excite gates (AION starts them shut)
        if module.__class__.__name__ == "SqueezeExcite":
            module.net[-2].weight.copy_(
                torch.randn(module.net[-2].weight.shape, generator=gen) * 0.3
            )
            module.net[-2].bias.zero_()
    new = build_codec({**codec_config(old), "hidden_dims": 48}).eval()
    latent = widen_codec(old, new, seed=5)
    flux = _mock_flux(8, 11)
    _, z = encoder_features(old, flux, BANDS)
    q = old.quantizer.quantize(z)
    a, b = old.decoder(old.post_quant_proj(q)), new.decoder(new.post_quant_proj(q))
    assert torch.allclose(a, b, atol=1e-5 * float(a.abs().max()))
    fit = refit_pre_quant(old, new, latent, flux, BANDS)
    assert fit["latent_rms_after_refit"] < 0.1 * fit["latent_rms_before_refit"]
    held_out = _mock_flux(8, 12)
    codes_old = old.quantizer.encode(encoder_features(old, held_out, BANDS)[1].flatten(2))
    codes_new = new.quantizer.encode(encoder_features(new, held_out, BANDS)[1].flatten(2))
    assert (codes_old == codes_new).float().mean() > 0.97


def test_warm_start_grows_the_shipped_codec_and_refuses_what_it_cannot_grow(tmp_path) -> None:
    shipped = load_codec("shipped")
    width = codec_config(shipped.codec)["hidden_dims"]
    wide = build_codec({**codec_config(shipped.codec), "hidden_dims": width + 32}).eval()
    card = warm_start(wide, "shipped", _mock_flux(16, 21), BANDS)
    assert card["grown"]["from_hidden_dims"] == width
    assert card["grown"]["latent_rms_after_refit"] < 0.02
    flux = _mock_flux(8, 22).numpy()
    grown = CodecHandle(wide, CodecInfo("grown", "local", fingerprint(wide), True))
    tokens = grown.encode(flux)
    assert (tokens == shipped.encode(flux)).float().mean() > 0.98
    recon_old, recon_new = shipped.decode(shipped.encode(flux)), grown.decode(tokens)
    scale = float(recon_old.abs().max())
    assert float((recon_new - recon_old).abs().median()) < 1e-3 * scale
    for bad in ({"hidden_dims": width - 16}, {"hidden_dims": width + 32, "num_consecutive": 3}):
        codec = build_codec({**codec_config(shipped.codec), **bad})
        with pytest.raises(ValueError, match="architecture"):
            warm_start(codec, "shipped", _mock_flux(4, 1), BANDS)
