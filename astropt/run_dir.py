"""The layout of a training run directory, known here only.

::

    config.yaml  loss.csv  loss.png
    val_images/step_000020.png
    checkpoints/{best,last,step_000020}/   model.safetensors, config.json, trainer_state.pt
    finetune_metrics.json  finetune_test.png   (fine-tune runs; their checkpoints add
                                                head.safetensors)

A checkpoint is written to ``<name>.tmp-XXXX`` next to its final place and swapped in through
``<name>.old``, so a partly written one is never mistaken for a complete one. No imports of
the project: the training loop, checkpoint writer, worker and service all read it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CheckpointKind = Literal["best", "last", "step"]
CHECKPOINT_NAME = re.compile(r"^(best|last|step_\d{1,9})$")
STEP_NAME = re.compile(r"^step_(\d+)$")
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
HEAD_FILE = "head.safetensors"  # a fine-tuned checkpoint's task head, beside the backbone
STAGING_MARK = ".tmp-"
REPLACED_SUFFIX = ".old"


def step_name(step: int) -> str:
    return f"step_{step:06d}"


def checkpoint_kind(name: str) -> CheckpointKind:
    return "step" if STEP_NAME.match(name) else name  # type: ignore[return-value]


def staging_prefix(final: Path) -> str:
    """Prefix of the temporary directory a checkpoint is written to before it is swapped in."""
    return f"{final.name}{STAGING_MARK}"


def replaced_path(final: Path) -> Path:
    """Where the previous checkpoint of that name waits while the new one is swapped in."""
    return final.with_name(final.name + REPLACED_SUFFIX)


@contextlib.contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Write a directory (a checkpoint) in a staging directory beside ``final``, then swap it in:
    ``final`` is always either the previous complete one or the new complete one. On an error
    the staging directory is removed and ``final`` is left as it was."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(final), dir=final.parent))
    try:
        yield staging
        previous = replaced_path(final)
        if previous.exists():
            shutil.rmtree(previous)
        if final.exists():
            os.replace(final, previous)
        os.replace(staging, final)
        shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def is_transient(part: str) -> bool:
    """Hidden files, staging directories and swapped-out checkpoints: not (yet) run output."""
    return part.startswith(".") or STAGING_MARK in part or part.endswith(REPLACED_SUFFIX)


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config_yaml(self) -> Path:
        return self.root / "config.yaml"

    @property
    def loss_csv(self) -> Path:
        return self.root / "loss.csv"

    @property
    def loss_png(self) -> Path:
        return self.root / "loss.png"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, name: str) -> Path:
        return self.checkpoints / name

    @property
    def finetune_metrics(self) -> Path:
        """A fine-tune run's metrics per label and split, with the probe and constant baselines."""
        return self.root / "finetune_metrics.json"

    @property
    def catalogue(self) -> Path:
        """An embed job's catalogue directory (``catalogue.parquet`` + ``manifest.json``)."""
        return self.root / "catalogue"

    @property
    def tokens(self) -> Path:
        """A tokenise job's token data set (astropt.tokens): deleting the job deletes it."""
        return self.root / "tokens"

    @property
    def finetune_figure(self) -> Path:
        """A fine-tune run's test-set figure (prediction vs truth per label)."""
        return self.root / "finetune_test.png"

    def val_image(self, step: int) -> Path:
        return self.root / "val_images" / f"{step_name(step)}.png"

    def best_or_last(self) -> Path | None:
        """The ``best`` checkpoint with weights, else ``last``; None when neither exists."""
        for name in ("best", "last"):
            candidate = self.checkpoint(name)
            if (candidate / WEIGHTS_FILE).is_file():
                return candidate
        return None

    def last_step(self) -> int | None:
        """Step of ``checkpoints/last`` (what a resume continues from), or None."""
        config = self.checkpoint("last") / CONFIG_FILE
        if not config.is_file():
            return None
        try:
            meta = json.loads(config.read_text())
        except (OSError, ValueError):
            return None
        step = meta.get("step") if isinstance(meta, dict) else None
        return int(step) if isinstance(step, int | float) else 0


def prune_step_checkpoints(checkpoints: Path, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` step checkpoints in ``checkpoints/`` (0 keeps all);
    returns the names removed. A big model's checkpoint (weights + optimiser state) is
    gigabytes: periodic ones add up."""
    if keep <= 0 or not checkpoints.is_dir():
        return []
    found = sorted(
        (int(match.group(1)), entry)
        for entry in checkpoints.iterdir()
        if entry.is_dir() and (match := STEP_NAME.match(entry.name))
    )
    removed = []
    for _, directory in found[:-keep]:
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory.name)
    return removed
