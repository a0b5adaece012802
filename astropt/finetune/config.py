"""Typed configuration of a fine-tuning run.

:class:`FinetuneSettings` is what a fine-tune adds to a model (labels, task, mode, LoRA, head,
optimiser); the job service's ``finetune`` section extends it. :class:`FinetuneConfig` is a
whole library run: the settings plus the initial checkpoint, the data and where to write.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from astropt.config import DataSettings, _Strict
from astropt.pooling import HeadPool

Task = Literal["regression", "classification"]
Mode = Literal["full", "lora", "head"]
LoraTargets = Literal["all", "attention", "mlp"]


class LoraSettings(_Strict):
    """Low-rank adapters (``peft``) on the transformer blocks' Linear layers."""

    r: int = Field(8, ge=1, le=256, description="Adapter rank.")
    alpha: float = Field(16.0, gt=0, le=4096, description="Scale: the update is B A * alpha / r.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the adapters' input.")
    targets: LoraTargets = Field(
        "all",
        description="Which Linear layers get adapters: attention (c_attn, c_proj), "
        "mlp (c_fc, c_proj) or all four.",
    )


class FinetuneSettings(_Strict):
    labels: list[str] = Field(
        min_length=1,
        max_length=32,
        description="Label columns to predict: "
        "mock truth parameters by name (e.g. mag_r, g_r) or columns of label_table.",
    )
    label_table: str | None = Field(
        None,
        description="CSV or Parquet file with an object_id column "
        "and the label columns; default: the mock's truth parameters.",
    )
    task: Task = Field(
        "regression",
        description="regression (standardised targets, MSE) or "
        "classification (cross-entropy over each label's distinct values).",
    )
    mode: Mode = Field(
        "lora",
        description="full: train everything; lora: frozen backbone + adapters "
        "+ head; head: frozen backbone, train the head only.",
    )
    lora: LoraSettings = Field(default_factory=LoraSettings)
    head_hidden: int = Field(
        64, ge=0, le=8192, description="Hidden width of the MLP head; 0: a linear head."
    )
    pooling: HeadPool = Field(
        "mean",
        description="How the head reads the hidden states of the last "
        "block: their mean, or the last token's (not /embed's default, centre).",
    )
    steps: int = Field(200, ge=1, description="Optimiser steps.")
    lr: float = Field(
        1e-3, gt=0, le=10.0, description="AdamW peak learning rate (warm-up, cosine to lr/10)."
    )
    weight_decay: float = Field(0.01, ge=0, le=10.0)
    batch_size: int = Field(16, ge=1, description="Galaxies per step.")
    eval_interval: int = Field(
        20, ge=1, description="Validation loss every N steps; the best is kept."
    )
    val_fraction: float = Field(0.15, gt=0, lt=0.5, description="Share of objects for validation.")
    test_fraction: float = Field(
        0.2, gt=0, lt=0.5, description="Share of objects held out for the test figures."
    )
    max_objects: int | None = Field(
        None, ge=8, description="Use at most this many labelled objects."
    )

    @field_validator("labels")
    @classmethod
    def _unique(cls, labels: list[str]) -> list[str]:
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be distinct, got {labels}")
        if any(not name.strip() or len(name) > 128 for name in labels):
            raise ValueError("label names must be non-empty and at most 128 characters")
        return labels

    @model_validator(mode="after")
    def _check_fractions(self) -> FinetuneSettings:
        if self.val_fraction + self.test_fraction >= 0.8:
            raise ValueError("val_fraction + test_fraction must leave at least 20% for training")
        return self


class FinetuneConfig(FinetuneSettings):
    """A fine-tuning run of the library (``astropt finetune``, the worker)."""

    init: str = Field(description="Checkpoint directory to start from, or 'shipped'.")
    data: DataSettings = Field(default_factory=lambda: DataSettings(n_mock=512))
    out_dir: str = Field(
        "runs/finetune", description="Run directory: checkpoints/best, finetune_metrics.json."
    )
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d{1,2})?|mps)$")
    seed: int = Field(
        1337, ge=0, le=2**32 - 1, description="Seed of the head, adapters and batch order."
    )
    num_threads: int = Field(0, ge=0, description="CPU threads for torch; 0 = torch default.")
