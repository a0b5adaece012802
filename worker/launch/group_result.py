"""The outcome a process group's rank 0 leaves for the worker that launched the group."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULT_FILE = ".group_result.json"


def write_result(
    out_dir: str | Path,
    status: str,
    step: int,
    *,
    reason: str | None = None,
    lost_ownership: bool = False,
    signalled: bool = False,
) -> None:
    record: dict[str, Any] = {
        "status": status,
        "step": step,
        "reason": reason,
        "lost_ownership": lost_ownership,
        "signalled": signalled,
    }
    Path(out_dir, RESULT_FILE).write_text(json.dumps(record))
