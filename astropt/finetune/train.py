"""The fine-tuning loop: ``finetune(config, callbacks) -> FinetuneResult``.

It reports through the training loop's :class:`~astropt.training.TrainCallback` (``on_start``,
``on_log`` with ``train_loss``/``lr``, ``on_eval`` with ``val_loss``, ``on_checkpoint``,
``should_stop``), so a job runs it under the same worker machinery as training. The weights
with the lowest validation loss are kept and written as ``checkpoints/best``: the backbone
(adapters merged) as a plain AstroPT checkpoint plus ``head.safetensors``. ``checkpoints/last``
is written at every evaluation and when the run stops, with what a resume needs
(:mod:`astropt.finetune.resume`): a re-run with the same config continues from it and trains
the very steps, with the very losses, an uninterrupted run would have.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from astropt.checkpoints import load_checkpoint, save_checkpoint
from astropt.finetune.config import FinetuneConfig
from astropt.finetune.data import SPLITS, LabelledData, load_labelled
from astropt.finetune.evaluate import constant_predictions, ridge_probe, scores, test_figure
from astropt.finetune.head import (
    LabelSpec,
    decode,
    encode_targets,
    head_for,
    head_loss,
    label_specs,
    specs_to_meta,
)
from astropt.finetune.model import FinetuneModel
from astropt.finetune.resume import Position, extra_tensors, read_position, trainer_state
from astropt.run_dir import HEAD_FILE, RunDir
from astropt.torch_policy import choose_device, set_threads
from astropt.training import TrainCallback

EVAL_BATCH = 64


@dataclass
class FinetuneResult:
    status: Literal["completed", "stopped"]
    step: int
    best_val_loss: float | None
    out_dir: str
    metrics: dict[str, Any] | None  # what finetune_metrics.json holds (completed runs)
    model: FinetuneModel  # the trained model as it was at its best step (adapters unmerged)
    data: LabelledData
    specs: list[LabelSpec]
    reason: str | None = None  # why it did not complete; fine-tunes only complete or stop


def resolve_init(init: str) -> Path:
    if init == "shipped":
        from astropt.checkpoints.shipped import SHIPPED_MODEL_DIR

        return SHIPPED_MODEL_DIR
    return Path(init).expanduser()


def load_init(init: str, device: torch.device) -> tuple[Any, dict[str, Any], Any]:
    """The initial model (train mode off), its meta and its codec (None for patch models)."""
    from astropt.codec import check_same_codec, load_codec

    path = resolve_init(init)
    model, meta = load_checkpoint(path, device)
    if meta.get("tokeniser") == "patch":
        return model, meta, None
    info = meta.get("codec")
    if not isinstance(info, dict) or "spec" not in info:
        raise ValueError(f"checkpoint {path} does not record its codec; it cannot read images")
    codec = load_codec(info["spec"], device)
    check_same_codec(info, codec.info, f"checkpoint {path}")
    return model, meta, codec


def learning_rate(step: int, config: FinetuneConfig) -> float:
    """Linear warm-up over the first 10% (at most 50 steps), cosine decay to lr/10."""
    warmup = min(50, max(1, config.steps // 10))
    if step <= warmup:
        return config.lr * step / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def pooled_features(
    model: Any, data: LabelledData, pooling: str, device: torch.device
) -> torch.Tensor:
    """Pooled hidden states of every object ``[N, C]`` (eval mode, no gradients)."""
    rows = np.arange(len(data))
    parts = []
    for start in range(0, len(rows), EVAL_BATCH):
        batch = {k: v.to(device) for k, v in data.batch(rows[start : start + EVAL_BATCH]).items()}
        parts.append(model.pooled(batch, pooling=pooling).float().cpu())
    return torch.cat(parts)


class FinetuneRun:
    """One fine-tune: set up in the constructor (data, features, model), trained by :meth:`run`."""

    def __init__(self, config: FinetuneConfig, callbacks: Sequence[TrainCallback] = ()):
        self.cfg, self.callbacks = config, list(callbacks)
        torch.manual_seed(config.seed)
        set_threads(config.num_threads or None)
        self.device = choose_device(config.device)
        backbone, self.init_meta, codec = load_init(config.init, self.device)
        self.data = load_labelled(config, self.init_meta, codec)
        self.train_rows, self.val_rows, self.test_rows = (self.data.index(s) for s in SPLITS)
        self.specs: list[LabelSpec] = label_specs(config.task, self.data.labels, self.train_rows)
        self.targets = encode_targets(self.specs, self.data.labels)
        backbone.eval()
        self.frozen = pooled_features(backbone, self.data, config.pooling, self.device)
        head = head_for(self.frozen.shape[1], self.specs, config.head_hidden)
        head.standardise_with(self.frozen[torch.as_tensor(self.train_rows)])
        self.model = FinetuneModel(backbone, head, config.mode, config.pooling, config.lora).to(
            self.device
        )
        params = [p for _, p in self.model.trainable()]
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.rng = np.random.default_rng(config.seed)
        self.run_dir = RunDir(Path(config.out_dir))

    def outputs(self, rows: np.ndarray, grad: bool = False) -> torch.Tensor:
        if not self.model.trains_backbone:  # frozen features were computed once
            return self.model.head(self.frozen[torch.as_tensor(rows)].to(self.device))
        with torch.set_grad_enabled(grad):
            parts = []
            for start in range(0, len(rows), len(rows) if grad else EVAL_BATCH):
                batch = self.data.batch(rows[start : start + (len(rows) if grad else EVAL_BATCH)])
                parts.append(self.model({k: v.to(self.device) for k, v in batch.items()}))
            return torch.cat(parts)

    @torch.no_grad()
    def loss_of(self, rows: np.ndarray) -> float:
        self.model.eval()
        loss = head_loss(self.outputs(rows), self.targets[rows].to(self.device), self.specs)
        self.model.train()
        return float(loss)

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.model.trainable()}

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, param in self.model.trainable():
                param.copy_(state[name])

    def start(self, resume: bool) -> Position:
        """Step 0, or where ``checkpoints/last`` left off (optimiser, RNGs and weights restored)."""
        restored = (
            read_position(self.run_dir.checkpoint("last"), self.cfg, self.optimizer, self.rng)
            if resume
            else None
        )
        if restored is None:
            return Position(0, math.inf, 0, self.snapshot())
        position, current = restored
        self.restore(current)
        return position

    def run(self, resume: bool = True) -> FinetuneResult:
        cfg = self.cfg
        at = self.start(resume)
        n_trainable = sum(p.numel() for _, p in self.model.trainable())
        info = {
            "device": str(self.device),
            "dtype": "float32",
            "codec": self.init_meta.get("codec"),
            "n_params": sum(p.numel() for p in self.model.parameters()),
            "n_trainable": n_trainable,
            "start_iter": at.step,
            "max_iters": cfg.steps,
            "out_dir": cfg.out_dir,
            "resumed": at.step > 0,
            "n_train": len(self.train_rows),
            "n_val": len(self.val_rows),
            "n_test": len(self.test_rows),
        }
        for cb in self.callbacks:
            cb.on_start(info)
        self.model.train()
        log_every, step, status, saved = max(1, cfg.steps // 50), at.step, "completed", at.step
        for step in range(at.step + 1, cfg.steps + 1):
            started = time.perf_counter()
            lr = learning_rate(step, cfg)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            rows = self.rng.choice(
                self.train_rows, size=min(cfg.batch_size, len(self.train_rows)), replace=False
            )
            loss = head_loss(
                self.outputs(rows, grad=True), self.targets[rows].to(self.device), self.specs
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in self.model.trainable()], 1.0)
            self.optimizer.step()
            if step % log_every == 0 or step == cfg.steps:
                metrics = {
                    "train_loss": float(loss.detach()),
                    "lr": lr,
                    "iter_time_s": time.perf_counter() - started,
                }
                for cb in self.callbacks:
                    cb.on_log(step, metrics)
            if step % cfg.eval_interval == 0 or step == cfg.steps:
                val = self.loss_of(self.val_rows)
                if val < at.best:
                    at.best, at.best_step, at.best_state = val, step, self.snapshot()
                for cb in self.callbacks:
                    cb.on_eval(step, {"train_loss": float(loss.detach()), "val_loss": val})
                at.step = saved = step
                self.save("last", step, at)
            if any(cb.should_stop() for cb in self.callbacks):
                status = "stopped"
                break
        best = at.best if at.best < math.inf else None
        if status == "stopped":
            if saved != step:
                at.step = step
                self.save("last", step, at)
            return FinetuneResult(
                "stopped", step, best, cfg.out_dir, None, self.model, self.data, self.specs
            )
        self.restore(at.best_state)
        metrics = self.evaluate(at.best_step, at.best, n_trainable)
        self.save("best", at.best_step, at)
        return FinetuneResult(
            "completed", step, best, cfg.out_dir, metrics, self.model, self.data, self.specs
        )

    @torch.no_grad()
    def evaluate(self, best_step: int, best: float, n_trainable: int) -> dict[str, Any]:
        from astropt.checkpoints import json_safe
        from astropt.plotting import write_atomic

        self.model.eval()
        rows = np.arange(len(self.data))
        methods = {"finetune": decode(self.outputs(rows), self.specs)}
        methods["probe"], alpha = ridge_probe(
            self.frozen.numpy(), self.targets.numpy(), self.specs, self.train_rows, self.val_rows
        )
        methods["constant"] = constant_predictions(
            self.specs, self.data.labels, self.train_rows, len(rows)
        )
        split_rows = dict(
            zip(SPLITS, (self.train_rows, self.val_rows, self.test_rows), strict=True)
        )
        scored = {
            m: {s: scores(self.specs, self.data.labels, pred, r) for s, r in split_rows.items()}
            for m, pred in methods.items()
        }
        cfg = self.cfg
        metrics = {
            "task": cfg.task,
            "mode": cfg.mode,
            "labels": cfg.labels,
            "init": str(resolve_init(cfg.init)),
            "pooling": cfg.pooling,
            "steps": cfg.steps,
            "best_step": best_step,
            "best_val_loss": best,
            "n": {s: int(len(r)) for s, r in split_rows.items()},
            "trainable_params": n_trainable,
            "probe_alpha": alpha,
            "figure": self.run_dir.finetune_figure.name,
            **scored,
        }
        write_atomic(
            self.run_dir.finetune_metrics,
            (json.dumps(json_safe(metrics), indent=2) + "\n").encode(),
        )
        png = test_figure(self.specs, self.data.labels, methods, self.test_rows, scored)
        write_atomic(self.run_dir.finetune_figure, png)
        return metrics

    def save(self, name: str, step: int, at: Position) -> None:
        """``best``: the servable model; ``last``: that and what a resume needs."""
        cfg, best = self.cfg, at.best if at.best < math.inf else None
        inherited = {k: self.init_meta.get(k) for k in ("codec", "tokeniser", "train_config")}
        meta = {
            **inherited,
            "step": step,
            "best_val_loss": best,
            "finetune": {
                "task": cfg.task,
                "mode": cfg.mode,
                "pooling": cfg.pooling,
                "init": str(resolve_init(cfg.init)),
                "labels": specs_to_meta(self.specs),
                "head": self.model.head.describe(),
                "lora": cfg.lora.model_dump() if cfg.mode == "lora" else None,
                "config": cfg.model_dump(mode="json"),
            },
        }
        path = self.run_dir.checkpoint(name)
        resumable = name == "last"
        save_checkpoint(
            path,
            self.model.merged_backbone(),
            meta=meta,
            extra_modules={HEAD_FILE: self.model.head},
            trainer_state=trainer_state(at, self.optimizer, self.rng) if resumable else None,
            extra_tensors=extra_tensors(dict(self.model.trainable()), at) if resumable else None,
        )
        for cb in self.callbacks:
            cb.on_checkpoint(step, str(path), "best" if name == "best" else "last")


def finetune(
    config: FinetuneConfig, callbacks: Sequence[TrainCallback] = (), resume: bool = True
) -> FinetuneResult:
    """Fine-tune ``config.init`` on ``config.labels``, continuing from ``checkpoints/last`` when
    there is one (``resume``); see the module doc."""
    return FinetuneRun(config, callbacks).run(resume)
