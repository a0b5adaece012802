"""What the training loop tells its observers, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from astropt.run_dir import CheckpointKind


class TrainCallback:
    """Override what you need. All methods run on the main process only."""

    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_log(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_eval(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_checkpoint(self, step: int, path: str, kind: CheckpointKind) -> None: ...
    def on_val_images(self, step: int, path: str) -> None: ...

    def should_stop(self) -> bool:
        """Polled between steps, between micro-steps, during evaluation and data preparation;
        rate-limit expensive checks here (the loop calls it often)."""
        return False


# completed: max_iters reached; stopped: should_stop() turned true; diverged: a loss or weight
# stopped being finite (``reason`` says where), and no checkpoint was written after it.
TrainStatus = Literal["completed", "stopped", "diverged"]


@dataclass
class TrainResult:
    status: TrainStatus
    step: int  # the last step finished (a diverged run's reason names the step that failed)
    best_val_loss: float | None
    out_dir: str
    reason: str | None = None
