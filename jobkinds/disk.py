"""What a job will write, estimated before it runs, against the data directory's disk budget.

Every estimate is an upper bound from the spec alone: a mock set not yet generated, the
tokens of a tokenise job, the checkpoints a training job keeps. The budget
(``ASTROPT_DISK_BUDGET_GB``) is compared with what the data directory holds now plus the
estimate; a job that would pass it is refused with both numbers.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from astropt.model_budget import estimate_checkpoint_bytes
from jobkinds.spec import JobSpec
from state.errors import SpecInvalid
from state.settings import Settings

# Measured: a 4-band 152x152 float32 mock galaxy in Parquet with its truth columns
# (100,000 galaxies wrote about 13.6 GB).
MOCK_BYTES_PER_GALAXY = 136_000
USAGE_CACHE_SECONDS = 30.0

_usage_lock = threading.Lock()
_usage: dict[Path, tuple[float, int]] = {}


def directory_bytes(root: Path) -> int:
    """Bytes of the regular files under ``root`` (symlinks not followed)."""
    total = 0
    for folder, _dirs, files in os.walk(root, followlinks=False):
        for name in files:
            try:
                stat = os.lstat(os.path.join(folder, name))
            except OSError:  # removed while we walked
                continue
            total += stat.st_size
    return total


def used_bytes(data_dir: Path, fresh: bool = False) -> int:
    """What the data directory holds, re-measured at most every 30 s (a walk of a big tree)
    unless ``fresh``."""
    root = data_dir.resolve()
    with _usage_lock:
        cached = _usage.get(root)
        if not fresh and cached is not None and time.monotonic() - cached[0] < USAGE_CACHE_SECONDS:
            return cached[1]
    size = directory_bytes(root) if root.is_dir() else 0
    with _usage_lock:
        _usage[root] = (time.monotonic(), size)
    return size


def mock_bytes(spec: JobSpec) -> int:
    """A mock set not generated yet (one that exists is reused and costs nothing)."""
    if spec.data.source != "mock":
        return 0
    from astropt.data.sources import mock_dir

    if (mock_dir(spec.data) / "manifest.json").is_file():
        return 0
    return spec.data.n_mock * MOCK_BYTES_PER_GALAXY


def checkpoint_bytes(spec: JobSpec, settings: Settings) -> int:
    """best, last and the kept step checkpoints (all of them when none are pruned)."""
    kept = settings.keep_step_checkpoints or max(
        1, spec.max_iters // max(1, spec.checkpoint_interval or 1)
    )
    return (2 + kept) * estimate_checkpoint_bytes(spec.model)


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def check_budget(what: str, estimate: int, settings: Settings) -> None:
    """422 naming the setting and both numbers when ``estimate`` more bytes would pass the budget."""
    if settings.disk_budget_gb is None or estimate <= 0:
        return
    budget = int(settings.disk_budget_gb * 2**30)
    used = used_bytes(settings.data_dir)
    if used + estimate > budget:
        raise SpecInvalid(
            "data",
            f"{what} would write about {gib(estimate)}; the data directory holds "
            f"{gib(used)} of its {gib(budget)} budget (setting ASTROPT_DISK_BUDGET_GB): "
            "delete data sets or runs (GET /datasets, DELETE /jobs/{id}) or ask for less",
        )
