"""The worker's main process imports the training code once, and touches no CUDA (worker/preload.py)."""

from __future__ import annotations

import json
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
