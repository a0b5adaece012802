"""The training loop: schedule, exact resume, artefacts, fail-fast configs, DDP."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from astropt.config import TrainConfig
from astropt.training import TrainCallback, learning_rate, train
from astropt.training.attempts import read_attempts


def tiny_config(tmp_path: Path, **overrides) -> TrainConfig:
    raw = {
        "out_dir": str(tmp_path / "run"),
        "codec": "random:0",
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 576, "dropout": 0.1},
        "data": {
            "source": "mock",
            "n_mock": 24,
            "mock_seed": 3,
            "val_fraction": 0.2,
            "path": str(tmp_path / "mock"),
        },
        "batch_size": 2,
        "max_iters": 16,
        "eval_interval": 8,
        "eval_iters": 1,
        "log_interval": 1,
        "n_val_images": 2,
        "optim": {"learning_rate": 3e-3, "warmup_iters": 2},
        "seed": 11,
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            raw[section][field] = value
        else:
            raw[key] = value
    return TrainConfig.model_validate(raw)


def read_train_losses(run_dir: Path) -> dict[int, float]:
    with (run_dir / "loss.csv").open() as fh:
        return {
            int(r["step"]): float(r["train_loss"]) for r in csv.DictReader(fh) if r["train_loss"]
        }


class StopAt(TrainCallback):
    def __init__(self, step: int):
        self.step, self.seen = step, 0

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self.seen = step

    def should_stop(self) -> bool:
        return self.seen >= self.step


class StopAfterEval(StopAt):
    """Stops once the evaluation at ``step`` is done (a stop seen earlier would skip it)."""

    def on_log(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self.seen = step


class Recorder(TrainCallback):
    def __init__(self):
        self.info, self.logs, self.evals, self.checkpoints = {}, [], [], []

    def on_start(self, info):
        self.info = info

    def on_log(self, step, metrics):
        self.logs.append((step, metrics))

    def on_eval(self, step, metrics):
        self.evals.append((step, metrics))

    def on_checkpoint(self, step, path, kind):
        self.checkpoints.append((step, kind))


def test_learning_rate_warmup_then_cosine_to_min_lr(tmp_path):
    cfg = tiny_config(tmp_path, max_iters=100, optim={"learning_rate": 1e-3, "warmup_iters": 10})
    lrs = [learning_rate(i, cfg) for i in range(101)]
    assert lrs[0] < lrs[5] < lrs[9] < 1e-3
    assert max(lrs) == pytest.approx(1e-3, rel=0.02)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[100] == pytest.approx(1e-4)


@pytest.mark.slow
def test_run_writes_artefacts_and_reports_progress(tmp_path):
    cfg = tiny_config(tmp_path)
    rec = Recorder()
    result = train(cfg, [rec])
    run = Path(result.out_dir)
    assert result.status == "completed" and result.step == 16
    assert rec.info["codec"]["spec"] == "random:0" and rec.info["codec"]["trained"] is False
    assert rec.info["unigram_entropy"] > 0
    assert [s for s, _ in rec.logs] == list(range(1, 17))
    assert all(m["tokens_per_s"] > 0 and math.isfinite(m["train_loss"]) for _, m in rec.logs)
    assert [s for s, _ in rec.evals] == [0, 8, 16]
    assert rec.evals[0][1]["val_loss"] == pytest.approx(math.log(10_000), abs=0.5)
    assert {"best", "last"} <= {k for _, k in rec.checkpoints}
    for name in ("loss.csv", "loss.png", "config.yaml", "val_images/step_000016.png"):
        assert (run / name).is_file(), name
    meta = json.loads((run / "checkpoints" / "last" / "config.json").read_text())
    assert meta["step"] == 16 and meta["codec"]["fingerprint"] == rec.info["codec"]["fingerprint"]
    assert TrainConfig.model_validate(meta["train_config"]) == cfg
    # random initial logits give ~ln(10000) nats; training must have moved away from it
    assert rec.logs[0][1]["train_loss"] == pytest.approx(math.log(10_000), abs=0.5)
    assert rec.logs[-1][1]["train_loss"] < rec.logs[0][1]["train_loss"] - 1.0


@pytest.mark.slow
def test_resume_reproduces_uninterrupted_losses(tmp_path):
    straight = train(tiny_config(tmp_path / "a"))
    stopped = train(tiny_config(tmp_path / "b"), [StopAt(6)])
    assert stopped.status == "stopped" and stopped.step == 6
    resumed = train(tiny_config(tmp_path / "b"))
    assert resumed.status == "completed" and resumed.step == 16
    a = read_train_losses(Path(straight.out_dir))
    b = read_train_losses(Path(resumed.out_dir))
    assert sorted(b) == list(range(1, 17))  # no gaps, no duplicates across the restart
    for step in range(7, 17):
        assert b[step] == pytest.approx(a[step], abs=1e-5), step
    # attempt 2 restored the step-6 checkpoint and trained 7..16: nothing twice, nothing skipped
    first, second = read_attempts(resumed.out_dir)
    assert (first["first_step"], first["last_step"], first["last_checkpoint"]) == (1, 6, 6)
    assert (second["resumed_from"], second["first_step"], second["last_step"]) == (6, 7, 16)


@pytest.mark.slow
def test_best_val_loss_and_best_checkpoint_survive_resume(tmp_path):
    # Guards the resumed run's memory of its best: a resume that forgot best_val_loss would
    # call its first (worse) evaluation the best and overwrite the best checkpoint with it.
    stopped = train(tiny_config(tmp_path), [StopAfterEval(8)])
    best_before = stopped.best_val_loss
    assert stopped.step == 8 and best_before is not None
    diverging = tiny_config(tmp_path, optim={"learning_rate": 3.0, "warmup_iters": 0})
    rec = Recorder()
    resumed = train(diverging, [rec])
    assert [s for s, _ in rec.evals] == [16] and rec.evals[0][1]["val_loss"] > best_before
    assert resumed.best_val_loss == best_before
    best = json.loads((Path(resumed.out_dir) / "checkpoints" / "best" / "config.json").read_text())
    assert best["step"] == 8 and best["best_val_loss"] == best_before
    assert "best" not in {k for s, k in rec.checkpoints if s > 8}


def test_resume_refuses_a_different_codec(tmp_path):
    train(tiny_config(tmp_path), [StopAt(2)])
    with pytest.raises(ValueError, match="tokens of two codecs cannot be mixed"):
        train(tiny_config(tmp_path, codec="random:1"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"model": {"n_embd": 30, "n_head": 4}}, "divisible by n_head"),
        ({"model": {"vocab_size": 1024}}, "must equal the AION codec"),
        ({"model": {"block_size": 512}}, "block_size .* too small"),
        ({"codec": "no-such-codec"}, "unknown codec spec"),
        ({"data": {"source": "local", "path": "/does/not/exist"}}, "does not exist"),
        ({"max_iter": 5}, "Extra inputs are not permitted"),
    ],
)
def test_bad_configs_fail_fast_with_a_clear_message(override, message):
    with pytest.raises(ValidationError, match=message):
        TrainConfig.from_dict(override)


def test_wrong_schema_data_file_fails_before_training(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"not_an_image": [1, 2, 3]}), data / "part-0.parquet")
    cfg = tiny_config(
        tmp_path, data={"source": "local", "path": str(data), "image_column": "image"}
    )
    with pytest.raises(ValueError, match="part-0.parquet"):
        train(cfg)
    assert not (Path(cfg.out_dir) / "checkpoints").exists()


def test_set_overrides_parse_yaml_values(tmp_path):
    cfg = TrainConfig.from_dict(
        {}, ["optim.learning_rate=2e-4", "model.n_layer=2", "codec=random:0"]
    )
    assert cfg.optim.learning_rate == 2e-4 and cfg.model.n_layer == 2
    with pytest.raises(ValueError, match="key=value"):
        TrainConfig.from_dict({}, ["optim.learning_rate"])


def single_process_reference(cfg: TrainConfig, world_size: int) -> dict[str, torch.Tensor]:
    """What DDP must equal: one process, rank 0's initialisation, each step on the ranks'
    batches concatenated (written here from the recipe, independently of the loop)."""
    from astropt.codec import load_codec
    from astropt.data import open_split
    from astropt.model import GPT
    from astropt.tokenise import shift_for_training, tokenise_dataset
    from astropt.training.batches import TokenBatches
    from astropt.training.loop import gpt_config

    codec = load_codec(cfg.codec, device=torch.device("cpu"))
    streams = []
    for rank in range(world_size):
        split = open_split(cfg.data, "train", rank=rank, world_size=world_size, seed=cfg.seed)
        tokens = tokenise_dataset(split, codec, bands=cfg.data.bands, progress=False)
        streams.append(TokenBatches(tokens, cfg.batch_size, cfg.seed + 7919 * rank))
    torch.manual_seed(cfg.seed)
    model = GPT(gpt_config(cfg))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    keep = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.optim.weight_decay},
            {"params": keep, "weight_decay": 0.0},
        ],
        lr=cfg.optim.learning_rate,
        betas=(cfg.optim.beta1, cfg.optim.beta2),
    )
    for step in range(cfg.max_iters):
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, cfg)
        combined = torch.cat([s.batch(step) for s in streams])
        _, loss = model(*shift_for_training(combined))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model.state_dict()


@pytest.mark.slow
def test_ddp_two_processes_on_gloo_train_one_model(tmp_path):
    # Guards the gradient all-reduce: without DDP the ranks start from different seeds and
    # step on different batches, so their parameters differ from each other and from the
    # one-process run on the combined batch.
    from safetensors.torch import load_file

    cfg = tiny_config(
        tmp_path,
        max_iters=3,
        eval_interval=100,
        n_val_images=0,
        data__n_mock=32,
        model={"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 576, "dropout": 0.0},
    )
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(cfg.to_yaml())
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(repo / "tests" / "astropt" / "ddp_probe.py"),
        str(cfg_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = Path(cfg.out_dir)
    ranks = [json.loads((run / f"data_rank{r}.json").read_text()) for r in (0, 1)]
    ids0, ids1 = set(ranks[0]["object_ids"]), set(ranks[1]["object_ids"])
    assert ids0 and ids1 and not ids0 & ids1  # each rank trains on its own shard
    assert len(ids0) + len(ids1) == ranks[0]["n"] + ranks[1]["n"]
    assert (run / "checkpoints" / "last" / "model.safetensors").is_file()
    assert torch.isfinite(torch.tensor(list(read_train_losses(run).values()))).all()

    p0, p1 = (load_file(str(run / f"params_rank{r}.safetensors")) for r in (0, 1))
    reference = single_process_reference(cfg, world_size=2)
    initial = initial_state(cfg)
    for name, ref in reference.items():
        assert torch.equal(p0[name], p1[name]), f"ranks disagree on {name}"
        assert torch.allclose(p0[name], ref, atol=2e-5, rtol=1e-4), (
            name,
            (p0[name] - ref).abs().max().item(),
        )
    moved = max((reference[n] - initial[n]).abs().max().item() for n in reference)
    assert moved > 1e-3  # the parameters did train, so agreeing means something


@pytest.mark.slow
def test_periodic_checkpoints_are_reported_with_their_kind(tmp_path):
    cfg = tiny_config(tmp_path, max_iters=6, eval_interval=6, checkpoint_interval=3, n_val_images=0)
    rec = Recorder()
    train(cfg, [rec])
    assert (3, "step") in rec.checkpoints and (6, "step") in rec.checkpoints
    assert {k for _, k in rec.checkpoints} == {"best", "last", "step"}
    assert (Path(cfg.out_dir) / "checkpoints" / "step_000003" / "model.safetensors").is_file()


def initial_state(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    from astropt.model import GPT
    from astropt.training.loop import gpt_config

    torch.manual_seed(cfg.seed)
    return GPT(gpt_config(cfg)).state_dict()
