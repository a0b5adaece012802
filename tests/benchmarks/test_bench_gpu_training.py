"""The GPU training benchmark runs end to end at a tiny size on CPU, so it cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.service.stack import REPO

pytestmark = pytest.mark.slow


def test_tiny_benchmark_reports_throughput_and_mfu() -> None:
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "bench_gpu_training.py"),
        "--size",
        "tiny",
        "--procs",
        "1",
        "--iters",
        "4",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert result["procs"] == 1 and result["world_size"] == 1 and result["device"] == "cpu"
    assert result["tokens_per_s"] > 0 and result["model_tflops_per_s"] > 0
    assert result["mfu"] is None and result["peak"].startswith(
        "unknown"
    )  # no CPU peak in the table
    assert "MFU" in done.stdout and "unknown" in done.stdout
