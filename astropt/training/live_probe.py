"""The live probe of a training run: what the embeddings know, at evaluations.

A fixed set (the first ``n_galaxies`` of the validation split, never trained on) is embedded
by the model being trained and each label of ``live_probe.labels`` is read off the embeddings
by a cross-validated ridge regression (:mod:`astropt.science.model_probe`). The R^2 values are
evaluation metrics named ``probe_r2/<label>``.

It runs on the main rank only, inside the evaluation, and leaves the run as it found it: the
model's train/eval mode and every random generator are restored, so the training losses of a
run are the same with and without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from astropt.config import LiveProbeSettings, TrainConfig
from astropt.data.samples import DataSourceError
from astropt.model import GPT
from astropt.science.embedding import EmbedOptions
from astropt.science.model_probe import ProbeSet, probe_model, select_labels, source_columns
from astropt.science.readers import ModelReader

PREFIX = "probe_r2/"
TIME_KEY = "probe_time_s"
BATCH_SIZE = 32  # galaxies per forward pass (inference only: no activations are kept)


def metric_name(label: str) -> str:
    return f"{PREFIX}{label}"


def metric_names(settings: LiveProbeSettings | None) -> list[str]:
    return [] if settings is None else [metric_name(label) for label in settings.labels]


@dataclass
class LiveProbe:
    settings: LiveProbeSettings
    probe_set: ProbeSet
    eval_interval: int
    max_iters: int
    seed: int

    @classmethod
    def prepare(
        cls, cfg: TrainConfig, val: object, held: torch.Tensor, reader: ModelReader
    ) -> LiveProbe:
        """The probe set from the validation split (a FiniteSplit) and what the loop holds of
        it (codec tokens, or centre crops for a patch model: :meth:`ModelReader.held_inputs`)."""
        settings = cfg.live_probe
        assert settings is not None
        n = min(settings.n_galaxies, len(held))
        rows, ids = list(val.indices)[:n], list(val.object_ids or [])[:n]  # type: ignore[attr-defined]
        labels = select_labels(source_columns(cfg.data), settings.labels, rows)
        for name, y in labels.items():
            usable = int(np.isfinite(y).sum())
            if usable < 2 * settings.folds:
                raise DataSourceError(
                    f"live_probe: {usable} validation galaxies have a finite {name!r}, too few for "
                    f"{settings.folds}-fold cross-validation; use more data, a larger data.val_fraction "
                    "or fewer live_probe.folds"
                )
        inputs = {k: v.clone() for k, v in reader.held_inputs(held[:n]).items()}
        probe_set = ProbeSet(ids, inputs, labels, reader)
        return cls(settings, probe_set, cfg.eval_interval, cfg.max_iters, cfg.seed)

    def due(self, step: int) -> bool:
        """At evaluations whose step is a multiple of ``every`` x eval_interval, and the last."""
        return step % (self.settings.every * self.eval_interval) == 0 or step == self.max_iters

    def run(
        self, model: GPT, dtype: torch.dtype | None, stop: Callable[[], bool] | None
    ) -> dict[str, float]:
        """``probe_r2/<label>`` per label (a label whose probe could not be fitted is left out)
        and ``probe_time_s``."""
        started = time.perf_counter()
        device = next(model.parameters()).device
        options = EmbedOptions(
            pool=self.settings.pool,
            layer=self.settings.layer,
            centre=self.settings.centre,
            batch_size=BATCH_SIZE,
        )
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            scores = probe_model(
                model,
                self.probe_set,
                options,
                folds=self.settings.folds,
                alpha=self.settings.alpha,
                seed=self.seed,
                dtype=dtype,
                stop=stop,
            )
        out = {
            metric_name(k): s.r2_mean
            for k, s in scores.items()
            if s is not None and np.isfinite(s.r2_mean)
        }
        out[TIME_KEY] = time.perf_counter() - started
        return out
