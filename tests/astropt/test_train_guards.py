"""The loop stops in every phase and refuses to go on (or save) once the numbers are not finite.

Divergence has a real, deterministic cause: AdamW's decoupled weight decay multiplies each
matrix by ``1 - learning_rate * weight_decay`` per step; both at the service's allowed
maximum (10) that is -99, so the weights overflow float32 within a few steps, on any machine.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest
import torch

from astropt.checkpoints import load_checkpoint
from astropt.data.mock import MANIFEST_NAME, write_mock_dataset
from astropt.run_dir import RunDir
from astropt.training import TrainCallback, train
from tests.astropt.test_train import Recorder, tiny_config

DIVERGING = {
    "optim__learning_rate": 10.0,
    "optim__weight_decay": 10.0,
    "optim__grad_clip": 0.0,
    "optim__warmup_iters": 0,
}


class StopWhenArmed(TrainCallback):
    """should_stop() turns true on its ``after``-th call once armed (by on_start or on_eval)."""

    def __init__(self, arm_on: str, after: int = 1):
        self.arm_on, self.after = arm_on, after
        self.armed, self.calls = False, 0
        self.recorder = Recorder()

    def on_start(self, info):
        self.recorder.on_start(info)
        self.armed |= self.arm_on == "start"

    def on_log(self, step, metrics):
        self.recorder.on_log(step, metrics)

    def on_eval(self, step, metrics):
        self.recorder.on_eval(step, metrics)
        self.armed |= self.arm_on == "eval"

    def should_stop(self) -> bool:
        if self.arm_on == "always":
            return True
        if self.armed:
            self.calls += 1
        return self.armed and self.calls >= self.after


@pytest.fixture(autouse=True)
def token_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ASTROPT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data" / "tokens"


@pytest.mark.slow
def test_a_diverging_run_stops_failed_and_keeps_its_last_finite_checkpoint(tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        max_iters=60,
        checkpoint_interval=2,
        eval_interval=3,
        **DIVERGING,
        model__dropout=0.0,
    )
    rec = Recorder()
    result = train(cfg, [rec])
    assert result.status == "diverged", result
    match = re.fullmatch(
        r"training diverged at step (\d+): (loss|val_loss|train_loss) (nan|inf|-inf)|"
        r"training diverged at step (\d+): non-finite (weights)",
        result.reason or "",
    )
    assert match, result.reason
    step = int(match.group(1) or match.group(4))
    assert 1 < step < 60
    assert result.step == (step - 1 if match.group(2) == "loss" else step)  # steps finished
    # Nothing non-finite was reported or logged, and nothing after the divergence.
    logged = [s for s, _ in rec.logs]
    assert logged == list(range(1, len(logged) + 1)) and logged[-1] < step
    assert all(math.isfinite(m["train_loss"]) for _, m in rec.logs)
    assert all(math.isfinite(m["val_loss"]) for _, m in rec.evals)
    with (RunDir(Path(cfg.out_dir)).loss_csv).open() as fh:
        values = [v for row in csv.DictReader(fh) for k, v in row.items() if k != "step" and v]
    assert values and all(math.isfinite(float(v)) for v in values)
    # Every checkpoint on disk predates the divergence and holds finite weights.
    saved = {s for s, _ in rec.checkpoints}
    assert saved and max(saved) < step
    run = RunDir(Path(cfg.out_dir))
    for name in ("best", "last"):
        model, meta = load_checkpoint(run.checkpoint(name), device="cpu")
        assert meta["step"] < step
        assert all(bool(torch.isfinite(p).all()) for p in model.parameters()), name
    assert load_checkpoint(run.checkpoint("last"), device="cpu")[1]["step"] == max(
        s for s, kind in rec.checkpoints if kind == "last"
    )


def test_cancel_during_mock_generation(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, data__n_mock=400)
    stop = StopWhenArmed("always")
    result = train(cfg, [stop])
    assert (result.status, result.step) == ("stopped", 0)
    assert stop.recorder.info == {} and stop.recorder.evals == []  # it never got to train
    assert not (tmp_path / "mock" / MANIFEST_NAME).exists()  # no half data set passes as whole
    assert not any((tmp_path / "mock").parent.glob(".mock.partial-*"))


def test_cancel_during_tokenisation(tmp_path: Path, token_cache: Path) -> None:
    write_mock_dataset(tmp_path / "mock", 24, 3, progress=False)  # the mock is ready
    cfg = tiny_config(tmp_path)
    stop = StopWhenArmed("always")
    result = train(cfg, [stop])
    assert (result.status, result.step) == ("stopped", 0)
    assert stop.recorder.info == {} and stop.recorder.evals == []
    assert not token_cache.exists() or not any(token_cache.iterdir())  # nothing cached half-done


def test_cancel_between_micro_steps_of_a_long_accumulation(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, grad_accum=50, max_iters=4)
    stop = StopWhenArmed("eval", after=2)  # 1st call: top of step 1; 2nd: inside its micro-steps
    result = train(cfg, [stop])
    assert (result.status, result.step) == ("stopped", 0)
    assert stop.recorder.logs == []  # step 1 was never finished
    _, meta = load_checkpoint(RunDir(Path(cfg.out_dir)).checkpoint("last"), device="cpu")
    assert meta["step"] == 0


def test_cancel_during_evaluation(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, eval_iters=20)
    stop = StopWhenArmed("start")  # the first poll after on_start is inside the baseline evaluation
    result = train(cfg, [stop])
    assert (result.status, result.step) == ("stopped", 0)
    assert stop.recorder.evals == []  # the evaluation was left, not finished
    assert RunDir(Path(cfg.out_dir)).last_step() == 0
