"""Import the training code once in the worker's main process, before its pool forks.

Each job runs in a fresh pool process (``worker_max_tasks_per_child=1``), forked from the main
process. Without this, every job imported torch, the job contract, the training loop and the
codec's model code itself: seconds of CPU before its first step. Imported once here, they are
shared with every pool process. Importing is all this does: CUDA starts lazily, in the job's own
process, after its devices are set (a CUDA context made before a fork would be unusable in the
child, so :func:`preload` checks that none was).
"""

from __future__ import annotations

import importlib
import time

# What a job's process imports before its first step (astropt.codec.layout imports aion lazily).
MODULES = (
    "torch",
    "jobkinds.registry",
    "astropt.training",
    "astropt.science",
    "astropt.codec",
    "aion.codecs",
)


def preload() -> float:
    """Import :data:`MODULES`; the seconds it took."""
    start = time.perf_counter()
    for name in MODULES:
        importlib.import_module(name)
    import torch

    if torch.cuda.is_initialized():
        raise RuntimeError(
            "CUDA was initialised while the worker preloaded its training code, so no job's "
            "process could use the GPU; set ASTROPT_WORKER_PRELOAD=false and report this"
        )
    return time.perf_counter() - start
