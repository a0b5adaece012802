"""Importing upstream patch ("aim"/"affine"), MAE and LoRA checkpoints: identical outputs.

Upstream checkpoints are built here from the documented layout (REFERENCE.md: continuous
``images`` modality, ``encoders.images.c_fc``/``c_proj``, ``decoders.images.*``,
``embedders.images.wpe``; newer model_args keys) and checked against a hand-written forward.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from astropt.checkpoints import CheckpointError, load_checkpoint
from astropt.checkpoints.upstream import UpstreamUnpickleWarning, import_upstream

L, H, C, T, IN = 1, 2, 16, 36, 64  # 4-pixel patches of 4 bands: 4*4*4 = 64 values


def upstream_state(tokeniser: str, mae: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * scale

    state = {
        "embedders.images.wpe.weight": rand(T, C, scale=1.0),
        "transformer.ln_f.weight": 1 + rand(C),
    }
    if tokeniser == "aim":
        state |= {
            "encoders.images.c_fc.weight": rand(4 * C, IN),
            "encoders.images.c_proj.weight": rand(C, 4 * C),
            "decoders.images.c_fc.weight": rand(4 * C, C),
            "decoders.images.c_proj.weight": rand(IN, 4 * C),
        }
    else:
        state |= {
            "encoders.images.c_fc.weight": rand(C, IN),
            "decoders.images.c_fc.weight": rand(IN, C),
        }
    for i in range(L):
        state |= {
            f"transformer.h.{i}.ln_1.weight": 1 + rand(C),
            f"transformer.h.{i}.attn.c_attn.weight": rand(3 * C, C),
            f"transformer.h.{i}.attn.c_proj.weight": rand(C, C),
            f"transformer.h.{i}.ln_2.weight": 1 + rand(C),
            f"transformer.h.{i}.mlp.c_fc.weight": rand(4 * C, C),
            f"transformer.h.{i}.mlp.c_proj.weight": rand(C, 4 * C),
        }
    if mae:
        state["mask_token"] = rand(1, 1, C, scale=1.0)
    return state


def reference(
    w: dict[str, torch.Tensor],
    x: torch.Tensor,
    tokeniser: str,
    causal: bool,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    def ln(v: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(v, (C,), weight, None, 1e-5)

    def mlp(v, a, b=None):
        return v @ w[a].T if b is None else F.gelu(v @ w[a].T, approximate="tanh") @ w[b].T

    aim = tokeniser == "aim"
    emb = mlp(x, "encoders.images.c_fc.weight", "encoders.images.c_proj.weight" if aim else None)
    if mask is not None:
        emb = torch.where(mask.unsqueeze(-1), w["mask_token"].reshape(C), emb)
    B, n = x.shape[:2]
    h = emb + w["embedders.images.wpe.weight"][:n]
    allowed = torch.ones(n, n, dtype=torch.bool)
    allowed = allowed.tril() if causal else allowed
    hd = C // H
    for i in range(L):
        p = f"transformer.h.{i}."
        q, k, v = (ln(h, w[p + "ln_1.weight"]) @ w[p + "attn.c_attn.weight"].T).split(C, dim=2)
        q, k, v = (t.view(B, n, H, hd).transpose(1, 2) for t in (q, k, v))
        att = (
            ((q @ k.transpose(-2, -1)) / math.sqrt(hd))
            .masked_fill(~allowed, float("-inf"))
            .softmax(-1)
        )
        h = h + (att @ v).transpose(1, 2).reshape(B, n, C) @ w[p + "attn.c_proj.weight"].T
        h = h + mlp(ln(h, w[p + "ln_2.weight"]), p + "mlp.c_fc.weight", p + "mlp.c_proj.weight")
    h = ln(h, w["transformer.ln_f.weight"])
    return mlp(h, "decoders.images.c_fc.weight", "decoders.images.c_proj.weight" if aim else None)


def write(path, state, **model_args):
    modality = {
        "name": "images",
        "input_size": IN,
        "pos_input_size": 1,
        "patch_size": 4,
        "embed_pos": True,
        "loss_weight": 1.0,
    }
    args = {
        "n_layer": L,
        "n_head": H,
        "n_embd": C,
        "n_chan": 4,
        "block_size": T,
        "dropout": 0.0,
        "modalities": [modality],
        "attn_type": "causal",
    } | model_args
    torch.save(
        {
            "model": {f"_orig_mod.{k}": v for k, v in state.items()},
            "model_args": args,
            "iter_num": 10,
            "best_val_loss": 0.5,
            "config": {},
        },
        path,
    )


def imported(tmp_path, **model_args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UpstreamUnpickleWarning)
        out = import_upstream(tmp_path / "ckpt.pt", tmp_path / "converted")
    model, meta = load_checkpoint(out)
    return model, meta


@pytest.mark.parametrize("tokeniser", ["aim", "affine"])
@pytest.mark.parametrize("objective", ["ar", "mae"])
def test_patch_checkpoints_import_with_identical_outputs(tmp_path, tokeniser, objective):
    mae = objective == "mae"
    state = upstream_state(tokeniser, mae)
    extra = {
        "tokeniser": tokeniser,
        "objective": objective,
        "mae_mask_ratio": 0.3,
        "norm_pix_loss": False,
        "attn_type": "full" if mae else "causal",
    }
    write(tmp_path / "ckpt.pt", state, **extra)
    model, meta = imported(tmp_path)
    assert model.config.tokeniser == tokeniser and model.config.objective == objective
    x = torch.randn(2, T, IN, generator=torch.Generator().manual_seed(5))
    inputs = {"images": x, "images_positions": torch.arange(T).expand(2, -1)}
    mask = torch.zeros(2, T, dtype=torch.bool)
    mask[:, ::3] = True
    with torch.no_grad():
        out, _ = model(inputs, masks={"images": mask} if mae else None)
    expected = reference(state, x, tokeniser, causal=not mae, mask=mask if mae else None)
    torch.testing.assert_close(out["images"], expected, rtol=1e-4, atol=1e-5)


def test_unmerged_lora_adapters_are_folded_in(tmp_path):
    state = upstream_state("aim", False)
    gen = torch.Generator().manual_seed(9)
    lora_a, lora_b = torch.randn(4, C, generator=gen), torch.randn(3 * C, 4, generator=gen)
    with_lora = dict(state) | {
        "transformer.h.0.attn.c_attn.lora_A": lora_a,
        "transformer.h.0.attn.c_attn.lora_B": lora_b,
    }
    write(tmp_path / "ckpt.pt", with_lora, lora_r=4, lora_alpha=8)
    model, _ = imported(tmp_path)
    merged = dict(state)
    merged["transformer.h.0.attn.c_attn.weight"] = (
        state["transformer.h.0.attn.c_attn.weight"] + lora_b @ lora_a * 2.0
    )
    x = torch.randn(1, T, IN)
    with torch.no_grad():
        out, _ = model({"images": x, "images_positions": torch.arange(T).expand(1, -1)})
    torch.testing.assert_close(
        out["images"], reference(merged, x, "aim", causal=True), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"backbone": "llm", "llm_model_name": "HuggingFaceTB/SmolLM2-135M"}, "backbone 'llm'"),
        ({"norm_pix_loss": True}, "norm_pix_loss"),
    ],
)
def test_unsupported_upstream_fields_get_a_clear_message(tmp_path, args, message):
    write(tmp_path / "ckpt.pt", upstream_state("aim", False), **args)
    with pytest.raises(CheckpointError, match=message):
        imported(tmp_path)
