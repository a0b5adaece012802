"""Patch tokenisation and the MAE objective at model level (upstream AstroPT semantics)."""

import pytest
import torch

from astropt.model import GPT, GPTConfig, ModalityConfig, ModelConfigError
from astropt.patches import (
    PATCH_MODALITY,
    image_to_patches,
    patches_to_image,
    patchify,
    random_mask,
    spiral_order,
)


def test_patchify_uses_p1_p2_c_order_and_inverts():
    flux = torch.randn(2, 4, 96, 96)
    patches = patchify(flux, 16)
    assert patches.shape == (2, 36, 1024)
    # patch (row 1, col 2): value index (p1 * 16 + p2) * 4 + c
    assert patches[1, 1 * 6 + 2, (3 * 16 + 5) * 4 + 2] == flux[1, 2, 16 + 3, 32 + 5]
    for order in ("raster", "spiral"):
        normed, mean, std = image_to_patches(flux, 16, order)
        assert torch.allclose(normed.mean(-1), torch.zeros(2, 36), atol=1e-5)
        assert torch.allclose(normed.std(-1), torch.ones(2, 36), atol=1e-4)
        back = patches_to_image(normed, mean, std, 16, 4, 96, order)
        assert torch.allclose(back, flux, atol=1e-5)


def test_spiral_starts_at_centre_and_is_a_permutation():
    order = spiral_order(6)
    assert sorted(order.tolist()) == list(range(36))
    assert order[0].item() in {14, 15, 20, 21}  # one of the four central patches
    assert spiral_order(5)[0].item() == 12


def test_random_mask_counts_and_is_reproducible():
    g = torch.Generator().manual_seed(3)
    mask = random_mask(4, 36, 0.25, g)
    assert mask.sum(1).tolist() == [9, 9, 9, 9]
    again = random_mask(4, 36, 0.25, torch.Generator().manual_seed(3))
    assert torch.equal(mask, again)


def patch_config(tokeniser="aim", objective="ar"):
    return GPTConfig(
        block_size=36,
        n_layer=1,
        n_head=2,
        n_embd=16,
        tokeniser=tokeniser,
        objective=objective,
        attn_type="full" if objective == "mae" else "causal",
        mae_mask_ratio=0.5,
        modalities=[ModalityConfig(PATCH_MODALITY, input_size=1024, patch_size=16)],
    )


@pytest.mark.parametrize("tokeniser", ["aim", "affine"])
def test_encoder_decoder_use_upstream_parameter_names(tokeniser):
    shapes = {k: tuple(v.shape) for k, v in GPT(patch_config(tokeniser)).state_dict().items()}
    if tokeniser == "aim":
        assert shapes["encoders.images.c_fc.weight"] == (64, 1024)
        assert shapes["encoders.images.c_proj.weight"] == (16, 64)
        assert shapes["decoders.images.c_fc.weight"] == (64, 16)
        assert shapes["decoders.images.c_proj.weight"] == (1024, 64)
    else:
        assert shapes["encoders.images.c_fc.weight"] == (16, 1024)
        assert shapes["decoders.images.c_fc.weight"] == (1024, 16)
        assert not any(
            k.startswith(("encoders.images.c_proj", "decoders.images.c_proj")) for k in shapes
        )
    assert "embedders.images.wpe.weight" in shapes and "mask_token" not in shapes


def test_mae_needs_full_attention():
    with pytest.raises(ModelConfigError, match="attn_type='full'"):
        GPTConfig(objective="mae", attn_type="causal").validate()


@pytest.mark.parametrize("discrete", [False, True])
def test_mae_loss_covers_masked_positions_only(discrete):
    torch.manual_seed(0)
    if discrete:
        config = GPTConfig(
            block_size=16,
            n_layer=1,
            n_head=2,
            n_embd=16,
            objective="mae",
            attn_type="full",
            modalities=[ModalityConfig("images_aion", input_size=50, vocab_size=50)],
        )
        x = torch.randint(0, 50, (2, 16))
    else:
        config = patch_config(objective="mae")
        x = torch.randn(2, 36, 1024)
    model = GPT(config)
    name = config.modalities[0].name
    inputs = {name: x, f"{name}_positions": torch.arange(x.shape[1]).expand(2, -1)}
    mask = random_mask(2, x.shape[1], 0.5, torch.Generator().manual_seed(1))
    _, loss = model(inputs, {name: x}, masks={name: mask})
    # Changing a target where the mask is off leaves the loss unchanged; where it is on, not.
    y = x.clone()
    y[~mask] = (y[~mask] + 1) % 50 if discrete else y[~mask] + 5.0
    assert torch.allclose(model(inputs, {name: y}, masks={name: mask})[1], loss)
    z = x.clone()
    z[mask] = (z[mask] + 1) % 50 if discrete else z[mask] + 5.0
    assert not torch.allclose(model(inputs, {name: z}, masks={name: mask})[1], loss)
    # The masked inputs are hidden: their values do not change the outputs.
    w = x.clone()
    w[mask] = (w[mask] + 7) % 50 if discrete else w[mask] * 3.0
    out_x, _ = model(inputs, masks={name: mask})
    out_w, _ = model({**inputs, name: w}, masks={name: mask})
    assert torch.allclose(out_x[name], out_w[name], atol=1e-5)
    loss.backward()
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0


def test_patch_model_learns_on_cpu():
    torch.manual_seed(0)
    model = GPT(patch_config("affine"))
    flux = torch.randn(4, 4, 96, 96).cumsum(-1)
    normed, _, _ = image_to_patches(flux, 16)
    inputs = {
        PATCH_MODALITY: normed[:, :-1],
        f"{PATCH_MODALITY}_positions": torch.arange(35).expand(4, -1),
    }
    targets = {PATCH_MODALITY: normed[:, 1:]}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        _, loss = model(inputs, targets)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first
