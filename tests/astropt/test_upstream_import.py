"""Importing upstream AstroPT (scripts/train_aion.py) checkpoints.

The upstream checkpoint is built here from the documented layout (docs: /work/shared/REFERENCE.md):
a torch.save dict whose pickles reference ``astropt.model.ModalityConfig`` and
``astropt.model.ModalityRegistry``. The converted model is checked against an independent
re-implementation of the upstream forward pass written directly on the raw tensors.
"""

from __future__ import annotations

import argparse
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import astropt.model
from astropt.checkpoints import CheckpointError, load_checkpoint
from astropt.checkpoints.commands import register
from astropt.checkpoints.upstream import UpstreamUnpickleWarning, import_upstream

N_LAYER, N_HEAD, N_EMBD, BLOCK, VOCAB = 2, 2, 16, 32, 10_000


@dataclass
class UpstreamModalityConfig:
    name: str
    input_size: int
    pos_input_size: int
    patch_size: int
    embed_pos: bool
    vocab_size: int
    loss_weight: float


class UpstreamModalityRegistry:
    def __init__(self, modalities: list) -> None:
        self.modalities = {m.name: m for m in modalities}


# Pickle records a class by module + qualified name: these test classes pose as upstream's.
for _cls in (UpstreamModalityConfig, UpstreamModalityRegistry):
    _cls.__module__, _cls.__qualname__ = "astropt.model", _cls.__name__.removeprefix("Upstream")


def upstream_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the documented upstream key names (a compiled model's prefix)."""
    gen = torch.Generator().manual_seed(seed)
    C = N_EMBD

    def rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * scale

    state = {
        "encoders.images_aion.wpe.weight": rand(VOCAB, C, scale=1.0),
        "embedders.images_aion.wpe.weight": rand(BLOCK, C, scale=1.0),
        "transformer.ln_f.weight": 1 + rand(C),
        "decoders.images_aion.c_fc.weight": rand(4 * C, C),
        "decoders.images_aion.c_proj.weight": rand(VOCAB, 4 * C),
    }
    for i in range(N_LAYER):
        state |= {
            f"transformer.h.{i}.ln_1.weight": 1 + rand(C),
            f"transformer.h.{i}.attn.c_attn.weight": rand(3 * C, C),
            f"transformer.h.{i}.attn.c_proj.weight": rand(C, C),
            f"transformer.h.{i}.ln_2.weight": 1 + rand(C),
            f"transformer.h.{i}.mlp.c_fc.weight": rand(4 * C, C),
            f"transformer.h.{i}.mlp.c_proj.weight": rand(C, 4 * C),
        }
    return {f"_orig_mod.{k}": v for k, v in state.items()}


def reference_logits(state: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """The upstream forward pass written out by hand (explicit masked softmax attention)."""
    w = {k.removeprefix("_orig_mod."): v for k, v in state.items()}
    B, T = tokens.shape
    C, hd = N_EMBD, N_EMBD // N_HEAD

    def ln(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (C,), weight, None, 1e-5)

    x = w["encoders.images_aion.wpe.weight"][tokens] + w["embedders.images_aion.wpe.weight"][:T]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(N_LAYER):
        p = f"transformer.h.{i}."
        q, k, v = (ln(x, w[p + "ln_1.weight"]) @ w[p + "attn.c_attn.weight"].T).split(C, dim=2)
        q, k, v = (t.view(B, T, N_HEAD, hd).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        attn = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ w[p + "attn.c_proj.weight"].T
        h = F.gelu(ln(x, w[p + "ln_2.weight"]) @ w[p + "mlp.c_fc.weight"].T, approximate="tanh")
        x = x + h @ w[p + "mlp.c_proj.weight"].T
    x = ln(x, w["transformer.ln_f.weight"])
    h = F.gelu(x @ w["decoders.images_aion.c_fc.weight"].T, approximate="tanh")
    return h @ w["decoders.images_aion.c_proj.weight"].T


def write_upstream_ckpt(path: Path, **model_arg_overrides) -> dict[str, torch.Tensor]:
    """An upstream-style ckpt.pt whose pickles name astropt.model.ModalityConfig/Registry."""
    modality = UpstreamModalityConfig("images_aion", VOCAB, 1, 1, True, VOCAB, 1.0)
    state = upstream_state_dict()
    ckpt = {
        "model": state,
        "optimizer": {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 3e-4}]},
        "model_args": {
            "n_layer": N_LAYER,
            "n_head": N_HEAD,
            "n_embd": N_EMBD,
            "n_chan": 1,
            "block_size": BLOCK,
            "dropout": 0.0,
            "modalities": [modality],
            "attn_type": "causal",
        }
        | model_arg_overrides,
        "iter_num": 4000,
        "best_val_loss": torch.tensor(5.125),
        "config": {"batch_size": 16, "learning_rate": 3e-4, "betas": (0.9, 0.95)},
        "modality_registry": UpstreamModalityRegistry([modality]),
    }
    with pytest.MonkeyPatch.context() as patch:  # pose as upstream's classes while pickling
        for cls in (UpstreamModalityConfig, UpstreamModalityRegistry):
            upstream_name = cls.__name__.removeprefix("Upstream")
            patch.setattr(astropt.model, upstream_name, cls, raising=False)
        torch.save(ckpt, path)
    assert astropt.model.ModalityConfig is not UpstreamModalityConfig
    assert not hasattr(astropt.model, "ModalityRegistry")
    with zipfile.ZipFile(path) as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert b"astropt.model" in pickled and b"ModalityRegistry" in pickled
    return state


@pytest.fixture
def upstream_ckpt(tmp_path) -> tuple[Path, dict[str, torch.Tensor]]:
    path = tmp_path / "ckpt.pt"
    return path, write_upstream_ckpt(path)


def test_converted_model_matches_the_upstream_forward(upstream_ckpt, tmp_path):
    path, state = upstream_ckpt
    with pytest.warns(UpstreamUnpickleWarning, match="trust"):
        out = import_upstream(path, tmp_path / "converted")
    model, meta = load_checkpoint(out)
    tokens = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(3))
    positions = torch.arange(24).expand(2, 24)
    with torch.no_grad():
        ours = model({"images_aion": tokens, "images_aion_positions": positions})[0]["images_aion"]
        expected = reference_logits(state, tokens)
    assert ours.shape == (2, 24, VOCAB)
    assert torch.allclose(ours, expected, atol=1e-5, rtol=1e-5)
    assert model.config.bias is False and model.config.block_size == BLOCK

    assert meta["source"] == "upstream" and meta["iter_num"] == meta["step"] == 4000
    assert meta["best_val_loss"] == 5.125
    assert meta["upstream_config"]["betas"] == [0.9, 0.95]
    assert meta["codec"]["spec"] == "polymathic-ai/aion-base"
    assert meta["codec"]["fingerprint"] is None and meta["codec"]["verified"] is False
    json.loads((out / "config.json").read_text())  # strict JSON
    assert not (out / "trainer_state.pt").exists()


def test_import_refuses_a_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no upstream checkpoint file"):
        import_upstream(tmp_path / "absent.pt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_import_refuses_files_that_are_not_upstream_checkpoints(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with (
        pytest.warns(UpstreamUnpickleWarning),
        pytest.raises(CheckpointError, match="not a readable"),
    ):
        import_upstream(garbage, tmp_path / "out")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with (
        pytest.warns(UpstreamUnpickleWarning),
        pytest.raises(CheckpointError, match="'model_args'"),
    ):
        import_upstream(other, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_import_refuses_weights_that_do_not_fit_model_args(tmp_path):
    path = tmp_path / "ckpt.pt"
    write_upstream_ckpt(path, n_layer=3)
    with (
        pytest.warns(UpstreamUnpickleWarning),
        pytest.raises(CheckpointError, match="do not match"),
    ):
        import_upstream(path, tmp_path / "out")


def test_cli_command_converts_and_reports_errors(upstream_ckpt, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="astropt")
    register(parser.add_subparsers(dest="command"))
    path, _ = upstream_ckpt
    args = parser.parse_args(["import-upstream", str(path), str(tmp_path / "cli_out")])
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert "trust" in captured.err and "cli_out" in captured.out
    assert (tmp_path / "cli_out" / "model.safetensors").is_file()
    args = parser.parse_args(["import-upstream", str(tmp_path / "nope.pt"), str(tmp_path / "x")])
    assert args.func(args) == 2
    assert "error: no upstream checkpoint file" in capsys.readouterr().err
