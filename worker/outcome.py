"""How a training result becomes the job's final phase (imports no torch)."""

from __future__ import annotations

from typing import Literal

FinalPhase = Literal["completed", "cancelled", "failed"]
# A diverged run failed: it must never be served as a healthy model.
PHASE_OF_STATUS: dict[str, FinalPhase] = {
    "completed": "completed",
    "stopped": "cancelled",
    "diverged": "failed",
}


def final_phase(status: str) -> FinalPhase:
    return PHASE_OF_STATUS[status]
