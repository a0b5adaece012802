"""Divergence: a loss or weight that is not a finite number ends the run.

A diverged run must never write a checkpoint (``best`` or ``last``) with non-finite weights,
nor report a non-finite number as a metric; it stops with a reason that names the step.
"""

from __future__ import annotations

import math

import torch


class Diverged(Exception):
    def __init__(self, step: int, what: str, value: float | None = None):
        found = f"{what} {value}" if value is not None else f"non-finite {what}"
        super().__init__(f"training diverged at step {step}: {found}")
        self.step, self.what, self.value = step, what, value


def check_finite(step: int, what: str, value: float) -> None:
    if not math.isfinite(value):
        raise Diverged(step, what, value)


def weights_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def check_weights(step: int, model: torch.nn.Module) -> None:
    if not weights_finite(model):
        raise Diverged(step, "weights")
