"""Warm start (``init_from``): the shipped model's weights, its shape and codec, a fresh schedule,
and a resume that continues from the run's own checkpoint, not from the init again."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from astropt.checkpoints import load_trainer_state, read_meta
from astropt.checkpoints.shipped import SHIPPED_MODEL_DIR
from astropt.codec import CodecError
from astropt.config import TrainConfig
from astropt.training import train
from astropt.training.attempts import read_attempts
from astropt.training.warm_start import InitMismatch, adopt_checkpoint, checkpoint_shape
from tests.astropt.test_train import Recorder, StopAt


def warm_config(tmp_path: Path, init_from: str | None, name: str, **top) -> TrainConfig:
    raw = {
        "init_from": init_from,
        "out_dir": str(tmp_path / name),
        "data": {
            "source": "mock",
            "n_mock": 24,
            "val_fraction": 0.2,
            "path": str(tmp_path / "mock"),
        },
        "batch_size": 2,
        "max_iters": 4,
        "eval_interval": 2,
        "eval_iters": 1,
        "log_interval": 1,
        "n_val_images": 0,
        "optim": {"learning_rate": 3e-4, "warmup_iters": 2},
        "device": "cpu",
        **top,
    }
    return TrainConfig.model_validate(raw)


def test_the_shape_and_codec_come_from_the_checkpoint_and_set_fields_must_match(
    tmp_path: Path,
) -> None:
    meta = read_meta(SHIPPED_MODEL_DIR)
    shape = meta["model_args"]
    adopted = adopt_checkpoint(warm_config(tmp_path, "shipped", "a"), meta, "shipped")
    assert (adopted.model.n_layer, adopted.model.n_head, adopted.model.n_embd) == (
        shape["n_layer"],
        shape["n_head"],
        shape["n_embd"],
    )
    assert adopted.model.block_size == 576 and adopted.codec == "shipped"
    assert (
        checkpoint_shape(meta)["tokeniser"] == "aion"
        and checkpoint_shape(meta)["vocab_size"] == 10000
    )
    # Set and equal, or a training setting (dropout): accepted as they are.
    same = warm_config(
        tmp_path,
        "shipped",
        "b",
        model={"n_layer": shape["n_layer"], "dropout": 0.1},
        codec="shipped",
    )
    assert adopt_checkpoint(same, meta, "shipped").model.dropout == 0.1
    with pytest.raises(InitMismatch) as caught:
        adopt_checkpoint(
            warm_config(
                tmp_path,
                "shipped",
                "c",
                model={"n_layer": 1, "n_head": 2, "n_embd": 32},
                codec="random:0",
            ),
            meta,
            "shipped",
        )
    assert set(caught.value.conflicts) == {"model.n_layer", "model.n_head", "model.n_embd", "codec"}
    assert f"model.n_embd is 32 here but {shape['n_embd']} in the checkpoint" in str(caught.value)


def test_a_warm_start_begins_at_the_shipped_models_loss_and_resumes_from_its_own_checkpoint(
    tmp_path: Path,
) -> None:
    init = tmp_path / "init"  # a copy, deleted before the resume: the run must not need it again
    shutil.copytree(SHIPPED_MODEL_DIR, init)
    shipped = read_meta(SHIPPED_MODEL_DIR)
    shipped_loss = shipped["best_val_loss"]

    scratch = Recorder()
    train(
        warm_config(
            tmp_path,
            None,
            "scratch",
            codec="shipped",
            max_iters=2,
            model={"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 576},
        ),
        [scratch],
    )
    assert scratch.evals[0][0] == 0 and scratch.evals[0][1]["val_loss"] > 9.0  # ~ln(10000) = 9.21

    first = Recorder()
    config = warm_config(tmp_path, str(init), "warm")
    result = train(config, [first, StopAt(2)])
    assert result.status == "stopped" and result.step == 2
    step0 = first.evals[0][1]["val_loss"]
    assert first.evals[0][0] == 0 and step0 < 1.5 and abs(step0 - shipped_loss) < 0.3, step0
    record = first.info["init_from"]
    assert record["path"] == str(init.resolve()) and record["step"] == shipped["step"]
    assert record["weights_sha256"].startswith("sha256:") and first.info["n_params"] > 1e6
    assert not first.info["resumed"] and first.info["start_iter"] == 0
    last = tmp_path / "warm" / "checkpoints" / "last"
    meta = read_meta(last)
    assert meta["init_from"] == record and (
        meta["train_config"]["model"]["n_embd"] == shipped["model_args"]["n_embd"]
    )
    assert meta["train_config"]["init_from"] == str(init)
    # a fresh optimiser and schedule: the lr of step 1 is the warm-up's first value
    assert first.logs[0][0] == 1 and first.logs[0][1]["lr"] == pytest.approx(3e-4 / 3)
    assert int(load_trainer_state(last)["iter_num"]) == 2
    weights_at_2 = load_file(str(last / "model.safetensors"))

    shutil.rmtree(init)
    second = Recorder()
    result = train(config, [second])
    assert result.status == "completed" and result.step == 4
    assert second.info["resumed"] and second.info["start_iter"] == 2
    assert second.info["init_from"] == record  # the run's record, carried by its own checkpoint
    assert [s for s, _ in second.logs] == [3, 4]
    _, restored = read_attempts(tmp_path / "warm")
    assert restored["resumed_from"] == 2 and restored["first_step"] == 3
    trained_on = load_file(str(last / "model.safetensors"))
    assert any(not torch.equal(trained_on[k], weights_at_2[k]) for k in weights_at_2)


def test_the_codec_fingerprint_must_be_the_checkpoints(tmp_path: Path) -> None:
    init = tmp_path / "init"
    shutil.copytree(SHIPPED_MODEL_DIR, init)
    meta = json.loads((init / "config.json").read_text())
    meta["codec"]["fingerprint"] = "0123456789abcdef"
    (init / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CodecError, match="fingerprint 0123456789abcdef"):
        train(warm_config(tmp_path, str(init), "run", max_iters=1))
    assert math.isfinite(read_meta(SHIPPED_MODEL_DIR)["best_val_loss"])
