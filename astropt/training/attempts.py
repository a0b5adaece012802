"""``attempts.jsonl``: which optimiser steps each attempt of a run trained.

One JSON line per call of ``train`` on a run directory, rewritten as the attempt goes:
``attempt`` (1, 2, ...), ``resumed_from`` (the checkpoint step it restored, or null),
``first_step`` (the first step it trained), ``last_step`` (the last step it finished,
null before the first) and ``last_checkpoint`` (the newest ``last`` checkpoint it saved).
A killed attempt keeps the line it last wrote, so a resumed run can be audited: the next
attempt must start at its checkpoint's step + 1 and never train a step twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from astropt.plotting import write_atomic

FILE_NAME = "attempts.jsonl"


def read_attempts(out_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / FILE_NAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class AttemptLog:
    def __init__(self, out_dir: Path, start_step: int, resumed: bool):
        self.path = out_dir / FILE_NAME
        self.history = read_attempts(out_dir)
        self.current: dict[str, Any] = {
            "attempt": len(self.history) + 1,
            "resumed_from": start_step if resumed else None,
            "first_step": start_step + 1,
            "last_step": None,
            "last_checkpoint": None,
        }
        self._flush()

    def stepped(self, step: int) -> None:
        self.current["last_step"] = step
        self._flush()

    def checkpointed(self, step: int) -> None:
        self.current["last_checkpoint"] = step
        self._flush()

    def _flush(self) -> None:
        lines = [json.dumps(entry) for entry in [*self.history, self.current]]
        write_atomic(self.path, ("\n".join(lines) + "\n").encode())
