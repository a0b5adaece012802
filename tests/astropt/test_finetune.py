"""Fine-tuning (astropt.finetune) on the GalSim mock with the shipped codec: what each mode
trains, the merged checkpoint, the predictions through the inference runtime, and that a
fine-tune predicts a truth parameter of held-out galaxies better than a constant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from astropt.checkpoints import load_checkpoint
from astropt.finetune import FinetuneConfig, LabelError
from astropt.finetune.data import split_of_object
from astropt.finetune.train import FinetuneRun
from astropt.run_dir import HEAD_FILE, RunDir
from tests.astropt.finetune_helpers import tiny_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def init(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("init") / "ckpt")


@pytest.fixture(scope="module")
def mock_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mock") / "n192"


def config(init: Path, out: Path, mock: Path, **overrides) -> FinetuneConfig:
    values = {
        "init": str(init),
        "labels": ["mag_r"],
        "mode": "lora",
        "steps": 8,
        "lr": 3e-3,
        "eval_interval": 4,
        "batch_size": 8,
        "device": "cpu",
        "out_dir": str(out),
        "data": {"source": "mock", "n_mock": 192, "path": str(mock)},
        "lora": {"r": 4, "alpha": 8},
    }
    values.update(overrides)
    return FinetuneConfig.model_validate(values)


def _is_trained(name: str) -> bool:
    return "lora_" in name or name.startswith("head.")


@pytest.mark.parametrize("mode", ["lora", "head", "full"])
def test_each_mode_trains_what_it_says_and_nothing_else(init, mock_dir, tmp_path, mode) -> None:
    run = FinetuneRun(config(init, tmp_path / "run", mock_dir, mode=mode, max_objects=64))
    before = {n: p.detach().clone() for n, p in run.model.named_parameters()}
    result = run.run()
    after = dict(run.model.named_parameters())
    assert result.status == "completed" and before.keys() == after.keys()
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    backbone = {n for n in before if not _is_trained(n)}
    assert {n for n in before if n.startswith("head.")} <= changed  # the head always trains
    if mode == "full":
        assert backbone & changed, "full fine-tuning left the backbone as it was"
        return
    # Frozen: every backbone weight bit-identical, and not even marked trainable.
    assert not backbone & changed, sorted(backbone & changed)
    assert all(not after[n].requires_grad for n in backbone)
    adapters = {n for n in before if "lora_" in n}
    if mode == "lora":
        # peft starts B at zero: a trained adapter has a non-zero B in every block layer.
        assert len(adapters) == 8 and {n for n in adapters if "lora_B" in n} <= changed
        assert {n for n, _ in run.model.trainable()} == adapters | {
            n for n in before if n.startswith("head.")
        }
    else:
        assert not adapters


def test_merged_checkpoint_is_a_plain_model_with_the_adapted_embedding(
    init, mock_dir, tmp_path
) -> None:
    from astropt.images import Cube
    from astropt.serving.runtime import InferenceRuntime, RuntimeConfig
    from astropt.serving.wire import InferenceRequest, InferenceResult

    result = FinetuneRun(
        config(init, tmp_path / "run", mock_dir, max_objects=64, labels=["mag_r", "g_r"])
    ).run()
    best = RunDir(tmp_path / "run").checkpoint("best")
    model, meta = load_checkpoint(best)  # astropt's own loader: no adapter keys, strict
    assert not any("lora" in k for k in model.state_dict()) and (best / HEAD_FILE).is_file()
    assert meta["finetune"]["mode"] == "lora" and [
        s["name"] for s in meta["finetune"]["labels"]
    ] == ["mag_r", "g_r"]
    rows = np.arange(6)
    inputs = result.data.batch(rows)
    result.model.eval()
    with torch.no_grad():
        adapted = result.model.features(inputs)
        merged = model.embed(inputs)
        initial = load_checkpoint(init)[0].embed(inputs)
    assert torch.allclose(adapted, merged, atol=1e-5), (adapted - merged).abs().max()
    assert not torch.allclose(initial, merged, atol=1e-4)  # the adapters did change the embedding
    # /predict's path (inference runtime + wire form) gives the head's de-standardised outputs.
    from astropt.data.sources import open_rows
    from astropt.finetune.head import decode

    rows_data, _ = open_rows(config(init, tmp_path, mock_dir).data)
    index = list(map(str, rows_data.keys())).index(result.data.object_ids[0])
    sample = rows_data.sample(index)
    request = InferenceRequest("predict", best, Cube(sample["flux"], tuple(sample["bands"])))
    # float32: on CPUs with native bf16 the runtime would default to bf16 (a few 1e-3 off).
    runtime = InferenceRuntime(RuntimeConfig(device="cpu", torch_threads=1, precision="float32"))
    answer = InferenceResult.from_wire(runtime.run_batch([request])[0].to_wire(), "predict").value
    with torch.no_grad():  # the checkpoint's model and head (the adapted one agrees to ~1e-5)
        expected = decode(
            result.model.head(model.embed(result.data.batch(np.array([0])))), result.specs
        )
    for name in ("mag_r", "g_r"):
        assert answer.values[name] == pytest.approx(float(expected[name][0]), abs=1e-4)


def test_lora_fine_tune_beats_a_constant_on_held_out_galaxies(init, mock_dir, tmp_path) -> None:
    # Measured (seeds 1, 2 of this set-up): test R^2 0.77 and 0.83 for LoRA; the ridge probe
    # 0.71; the constant -0.02. The threshold leaves room for other machines' float drift.
    result = FinetuneRun(
        config(init, tmp_path / "run", mock_dir, steps=80, eval_interval=10, batch_size=16, seed=1)
    ).run()
    metrics = json.loads(RunDir(tmp_path / "run").finetune_metrics.read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    test = {m: metrics[m]["test"]["mag_r"] for m in ("finetune", "probe", "constant")}
    assert metrics["n"]["test"] >= 20
    assert test["constant"]["r2"] <= 0.05
    assert test["finetune"]["r2"] > 0.5, test
    assert test["finetune"]["rmse"] < 0.7 * test["constant"]["rmse"], test
    assert metrics["trainable_params"] < 10_000  # adapters and head only
    assert RunDir(tmp_path / "run").finetune_figure.read_bytes()[:4] == b"\x89PNG"


def test_split_is_by_object_and_stable() -> None:
    ids = [f"mock-s0-{i:08d}" for i in range(2000)]
    splits = [split_of_object(o, 0.15, 0.2) for o in ids]
    assert splits == [split_of_object(o, 0.15, 0.2) for o in reversed(ids)][::-1]
    share = {s: splits.count(s) / len(ids) for s in ("train", "val", "test")}
    assert abs(share["test"] - 0.2) < 0.03 and abs(share["val"] - 0.15) < 0.03
    from astropt.data import split_of

    # The pretraining val split (val_fraction 0.05) lies inside the fine-tune test split.
    assert all(s == "test" for o, s in zip(ids, splits, strict=True) if split_of(o, 0.05) == "val")


def test_unknown_labels_name_the_valid_ones(init, mock_dir, tmp_path) -> None:
    with pytest.raises(LabelError, match="valid labels: .*mag_r"):
        FinetuneRun(config(init, tmp_path / "run", mock_dir, labels=["r_magnitude"]))


def test_cli_runs_a_fine_tune_and_prints_the_comparison(init, mock_dir, tmp_path, capsys) -> None:
    from astropt.cli import main

    code = main(
        [
            "finetune",
            "--init",
            str(init),
            "--labels",
            "bulge_dominated",
            "--mode",
            "head",
            "--task",
            "classification",
            "--steps",
            "6",
            "--n-mock",
            "192",
            "--device",
            "cpu",
            "--set",
            f"data.path={mock_dir}",
            "--set",
            "max_objects=64",
            "--out",
            str(tmp_path / "cli"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "finetune" in out and "probe" in out and "acc " in out and "bulge_dominated" in out
    metrics = json.loads(RunDir(tmp_path / "cli").finetune_metrics.read_text())
    assert metrics["task"] == "classification" and metrics["mode"] == "head"
    meta = load_checkpoint(RunDir(tmp_path / "cli").checkpoint("best"))[1]
    assert meta["finetune"]["labels"][0]["classes"] == ["0", "1"]


class Losses:
    """Records every loss a fine-tune reports; stops after ``stop_at`` steps when given."""

    def __init__(self, stop_at: int | None = None):
        self.stop_at, self.step, self.info = stop_at, 0, {}
        self.train: dict[int, float] = {}
        self.val: dict[int, float] = {}

    def on_start(self, info) -> None:
        self.info = info

    def on_log(self, step, metrics) -> None:
        self.step, self.train[step] = step, metrics["train_loss"]

    def on_eval(self, step, metrics) -> None:
        self.val[step] = metrics["val_loss"]

    def on_checkpoint(self, *args) -> None: ...

    def on_val_images(self, *args) -> None: ...

    def should_stop(self) -> bool:
        return self.stop_at is not None and self.step >= self.stop_at


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_a_stopped_fine_tune_resumes_exactly(init, mock_dir, tmp_path, mode) -> None:
    from safetensors.torch import load_file

    from astropt.checkpoints import CheckpointError

    # dropout in the adapters: the resumed run must also draw the random numbers it would have
    settings = {
        "mode": mode,
        "max_objects": 64,
        "steps": 9,
        "eval_interval": 3,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.2},
    }
    whole = Losses()
    FinetuneRun(config(init, tmp_path / "whole", mock_dir, **settings), [whole]).run()
    assert sorted(whole.train) == list(range(1, 10)) and sorted(whole.val) == [3, 6, 9]

    first = Losses(stop_at=5)  # between evaluations: the stop writes last at step 5
    out = tmp_path / "split"
    stopped = FinetuneRun(config(init, out, mock_dir, **settings), [first]).run()
    assert stopped.status == "stopped" and stopped.step == 5
    assert json.loads((out / "checkpoints/last/config.json").read_text())["step"] == 5
    second = Losses()
    resumed = FinetuneRun(config(init, out, mock_dir, **settings), [second]).run()
    assert (
        second.info["resumed"]
        and second.info["start_iter"] == 5
        and sorted(second.train) == [6, 7, 8, 9]
    )
    # the same losses, bit for bit, as the run that was never interrupted
    assert {**first.train, **second.train} == whole.train
    assert {**first.val, **second.val} == whole.val
    assert resumed.best_val_loss == min(whole.val.values())
    metrics = [
        json.loads((d / "finetune_metrics.json").read_text()) for d in (tmp_path / "whole", out)
    ]
    assert (
        metrics[0]["best_step"] == metrics[1]["best_step"]
        and metrics[0]["finetune"]["test"] == metrics[1]["finetune"]["test"]
    )
    heads = [load_file(str(d / "checkpoints/best" / HEAD_FILE)) for d in (tmp_path / "whole", out)]
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])

    with pytest.raises(
        CheckpointError, match="lr"
    ):  # other settings: never a silent mix of two runs
        FinetuneRun(config(init, out, mock_dir, **{**settings, "lr": 1e-3})).run()
