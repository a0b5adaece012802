"""The worker's main process imports the training code once, and touches no CUDA (worker/preload.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

CODE = """
import json, sys
from worker.preload import MODULES, preload
before = [m for m in MODULES if m in sys.modules]
seconds = preload()
import torch
print(json.dumps({
    "before": before,
    "missing": [m for m in MODULES if m not in sys.modules],
    "cuda_initialised": torch.cuda.is_initialized(),
    "seconds": seconds,
}))
"""


def test_preload_imports_what_a_job_needs_and_starts_no_cuda() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True, timeout=300
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["before"] == []  # importing the module itself imports none of them
    assert result["missing"] == []
    assert result["cuda_initialised"] is False
    assert result["seconds"] > 0


FORK_AFTER_PRELOAD = """
import os, signal
from worker.preload import preload
preload()
pid = os.fork()
if pid == 0:  # what a job's pool process does: torch with its own threads, after the fork
    signal.alarm(60)
    import torch
    torch.set_num_threads(2)
    a = torch.randn(256, 256)
    for _ in range(10):
        a = (a @ a).tanh()
    os._exit(0 if torch.isfinite(a).all() else 1)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


def test_a_process_forked_after_the_preload_computes_with_several_threads() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", FORK_AFTER_PRELOAD],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env=env,
    )
    assert out.stdout.strip().splitlines()[-1] == "0", out.stderr
