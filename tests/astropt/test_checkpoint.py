"""Checkpoint directories: round trips, atomic replacement, safe trainer state, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import pytest
import torch

import astropt
from astropt.checkpoints import (
    CheckpointError,
    load_checkpoint,
    load_model,
    load_trainer_state,
    save_checkpoint,
)
from astropt.model import GPT, GPTConfig, ModalityConfig

META = {
    "codec": {"spec": "random:0", "source": "random", "fingerprint": "abc123", "trained": False},
    "step": 7,
    "best_val_loss": 3.25,
    "train_config": {"batch_size": 2, "bands": ["DES-G", "DES-R"]},
}


def tiny_model(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    values = dict(block_size=16, n_layer=1, n_head=2, n_embd=16)
    values.update(overrides)
    values.setdefault("modalities", [ModalityConfig("images_aion", 100, vocab_size=100)])
    return GPT(GPTConfig(**values)).eval()


def logits(model: GPT, tokens: torch.Tensor) -> torch.Tensor:
    positions = torch.arange(tokens.shape[1]).expand_as(tokens)
    with torch.no_grad():
        return model({"images_aion": tokens, "images_aion_positions": positions})[0]["images_aion"]


def trainer_state_for(model: GPT) -> dict:
    optimizer = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu")
    tokens = torch.randint(0, 100, (2, 8))
    positions = torch.arange(8).expand(2, 8)
    _, loss = model(
        {"images_aion": tokens, "images_aion_positions": positions}, {"images_aion": tokens}
    )
    loss.backward()
    optimizer.step()
    return {
        "optimizer": optimizer.state_dict(),
        "scaler": {"scale": 65536.0, "growth_tracker": 0},
        "rng": {"torch": torch.get_rng_state(), "python": [3, [1, 2, 3], None]},
        "step": 7,
        "data_position": {"epoch": 1, "index": 12},
    }


def test_round_trip_gives_identical_logits_and_meta(tmp_path):
    model = tiny_model()
    out = save_checkpoint(tmp_path / "ckpt", model, meta=META)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    loaded, meta = load_checkpoint(out)
    tokens = torch.randint(0, 100, (3, 12))
    assert torch.equal(logits(model, tokens), logits(loaded, tokens))
    assert not loaded.training
    assert meta["format"] == "astropt-checkpoint" and meta["format_version"] == 1
    assert meta["model_args"] == model.config.to_dict()
    assert {k: meta[k] for k in META} == META
    assert load_trainer_state(out) is None
    assert torch.equal(logits(astropt.load_model(out), tokens), logits(model, tokens))


def test_continuous_modalities_and_biases_round_trip(tmp_path):
    model = tiny_model(
        bias=True,
        modalities=[
            ModalityConfig("spectra", 5),
            ModalityConfig("images_aion", 100, vocab_size=100),
        ],
    )
    out = save_checkpoint(tmp_path / "c", model, meta={})
    loaded = load_model(out)
    inputs = {"spectra": torch.randn(1, 4, 5), "spectra_positions": torch.arange(4)[None]}
    assert torch.equal(model(inputs)[0]["spectra"], loaded(inputs)[0]["spectra"])


def test_compiled_model_wrappers_are_unwrapped_and_prefixes_stripped(tmp_path):
    model = tiny_model()
    wrapper = torch.nn.Module()
    wrapper._orig_mod = model  # what torch.compile's OptimizedModule looks like
    out = save_checkpoint(tmp_path / "c", wrapper, meta={})
    from safetensors.torch import load_file, save_file

    state = load_file(out / "model.safetensors")
    assert not [k for k in state if k.startswith("_orig_mod.")]
    save_file({f"_orig_mod.{k}": v for k, v in state.items()}, out / "model.safetensors")
    tokens = torch.randint(0, 100, (1, 6))
    assert torch.equal(logits(load_model(out), tokens), logits(model, tokens))


def test_trainer_state_loads_with_weights_only(tmp_path):
    model = tiny_model()
    state = trainer_state_for(model)
    out = save_checkpoint(tmp_path / "c", model, meta=META, trainer_state=state)
    raw = torch.load(out / "trainer_state.pt", weights_only=True)
    restored = load_trainer_state(out)
    assert restored["step"] == raw["step"] == 7 and restored["data_position"] == {
        "epoch": 1,
        "index": 12,
    }
    assert torch.equal(restored["rng"]["torch"], state["rng"]["torch"])
    optimizer = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu")
    optimizer.load_state_dict(restored["optimizer"])
    exp_avg = optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(exp_avg, state["optimizer"]["state"][0]["exp_avg"])


@pytest.mark.parametrize("opaque", [Fraction(1, 3), lambda: None])
def test_trainer_state_with_arbitrary_objects_is_refused_and_nothing_written(tmp_path, opaque):
    with pytest.raises(CheckpointError, match="weights_only=True"):
        save_checkpoint(tmp_path / "c", tiny_model(), meta={}, trainer_state={"x": opaque})
    assert list(tmp_path.iterdir()) == []


def test_meta_must_be_json_and_not_reserved(tmp_path):
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(tmp_path / "c", tiny_model(), meta={"x": object()})
    with pytest.raises(CheckpointError, match="reserved"):
        save_checkpoint(tmp_path / "c", tiny_model(), meta={"model_args": {}})
    out = save_checkpoint(tmp_path / "c", tiny_model(), meta={"best_val_loss": float("inf")})
    assert json.loads((out / "config.json").read_text())["best_val_loss"] is None  # strict JSON


def test_save_replaces_an_existing_checkpoint(tmp_path):
    first, second = tiny_model(0), tiny_model(1)
    save_checkpoint(tmp_path / "last", first, meta={"step": 1})
    save_checkpoint(tmp_path / "last", second, meta={"step": 2})
    loaded, meta = load_checkpoint(tmp_path / "last")
    tokens = torch.randint(0, 100, (1, 5))
    assert meta["step"] == 2 and torch.equal(logits(loaded, tokens), logits(second, tokens))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_leftover_temporary_directory_is_never_loaded(tmp_path):
    model = tiny_model()
    save_checkpoint(tmp_path / "best", model, meta={})
    (tmp_path / "best").rename(tmp_path / "best.tmp-crashed")
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        load_model(tmp_path / "best")
    out = save_checkpoint(tmp_path / "best", tiny_model(1), meta={"step": 3})
    assert load_checkpoint(out)[1]["step"] == 3
    assert (tmp_path / "best.tmp-crashed").is_dir()  # not reused, not deleted


def test_failed_save_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    model = tiny_model()
    save_checkpoint(tmp_path / "last", model, meta={"step": 1})

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("astropt.checkpoints.io.save_model", explode)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "last", tiny_model(1), meta={"step": 2})
    monkeypatch.undo()
    loaded, meta = load_checkpoint(tmp_path / "last")
    tokens = torch.randint(0, 100, (1, 5))
    assert meta["step"] == 1 and torch.equal(logits(loaded, tokens), logits(model, tokens))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_crash_mid_save_in_a_subprocess_keeps_the_old_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "last", tiny_model(), meta={"step": 1})
    script = f"""
import os, torch
import astropt.checkpoints.io as ck
from astropt.model import GPT, GPTConfig, ModalityConfig
real = ck.save_model
def save_then_die(model, filename, **kw):
    real(model, filename, **kw)
    os._exit(9)
ck.save_model = save_then_die
model = GPT(GPTConfig(block_size=16, n_layer=1, n_head=2, n_embd=16,
            modalities=[ModalityConfig("images_aion", 100, vocab_size=100)]))
ck.save_checkpoint({str(tmp_path / "last")!r}, model, meta={{"step": 2}})
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert result.returncode == 9, result.stderr.decode()
    assert load_checkpoint(tmp_path / "last")[1]["step"] == 1


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_missing_files_are_reported(tmp_path, missing):
    out = save_checkpoint(tmp_path / "c", tiny_model(), meta={})
    (out / missing).unlink()
    with pytest.raises(CheckpointError, match=f"{missing} is missing"):
        load_model(out)


def test_missing_directory_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        load_model(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        load_trainer_state(tmp_path / "nope")


def test_corrupt_weights_are_reported(tmp_path):
    out = save_checkpoint(tmp_path / "c", tiny_model(), meta={})
    (out / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match="corrupt or not a safetensors file"):
        load_model(out)
    data = tmp_path / "c" / "model.safetensors"
    save_checkpoint(tmp_path / "c", tiny_model(), meta={})
    data.write_bytes(data.read_bytes()[:-100])  # truncated
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(out)


def test_weights_from_another_architecture_are_reported(tmp_path):
    out = save_checkpoint(tmp_path / "c", tiny_model(), meta={})
    other = save_checkpoint(tmp_path / "o", tiny_model(n_layer=2), meta={})
    (out / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="does not match model_args"):
        load_model(out)


@pytest.mark.parametrize(
    ("config_text", "message"),
    [
        ("{broken", "not valid JSON"),
        ('{"format": "something-else"}', "not an astropt checkpoint"),
        ('{"format": "astropt-checkpoint", "format_version": 99, "model_args": {}}', "upgrade"),
        (
            '{"format": "astropt-checkpoint", "format_version": 1, "model_args": {"n_head": 5}}',
            "valid model",
        ),
    ],
)
def test_bad_config_json_is_reported(tmp_path, config_text, message):
    out = save_checkpoint(tmp_path / "c", tiny_model(), meta={})
    (out / "config.json").write_text(config_text)
    with pytest.raises(CheckpointError, match=message):
        load_model(out)


def test_corrupt_trainer_state_is_reported(tmp_path):
    model = tiny_model()
    out = save_checkpoint(tmp_path / "c", model, meta={}, trainer_state={"step": 1})
    (out / "trainer_state.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_trainer_state(out)


def test_import_astropt_stays_light():
    code = "import sys, astropt; print('torch' in sys.modules, callable(astropt.load_model))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.split() == ["False", "True"]
