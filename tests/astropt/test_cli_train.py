"""``astropt train`` as a user runs it (one process), and every config the package ships."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from astropt.config import TrainConfig
from astropt.training.attempts import read_attempts

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "astropt" / "configs").glob("*.yaml"))


def test_the_package_ships_configs() -> None:
    assert {p.name for p in CONFIGS} >= {"mock-small.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path: Path) -> None:
    config = TrainConfig.from_yaml(str(path))
    raw = yaml.safe_load(path.read_text())
    assert config.max_iters == raw["max_iters"] and config.model.n_layer == raw["model"]["n_layer"]


def astropt_train(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "astropt.cli", "train", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_astropt_train_runs_the_small_config_with_set_out_and_fresh(tmp_path: Path) -> None:
    out = tmp_path / "run"
    small = [
        "--config",
        str(REPO / "astropt" / "configs" / "mock-small.yaml"),
        "--out",
        str(out),
        "--set",
        "data.n_mock=16",
        "--set",
        f"data.path={tmp_path / 'mock'}",
        "--set",
        "data.val_fraction=0.25",
        "--set",
        "batch_size=2",
        "--set",
        "eval_iters=1",
        "--set",
        "eval_interval=100",
        "--set",
        "device=cpu",
    ]
    first = astropt_train(*small, "--set", "max_iters=2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "completed at step 2" in first.stdout
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (
        saved["max_iters"] == 2 and saved["data"]["n_mock"] == 16 and saved["model"]["n_layer"] == 4
    )
    assert json.loads((out / "checkpoints" / "last" / "config.json").read_text())["step"] == 2

    resumed = astropt_train(*small, "--set", "max_iters=3")  # same run directory: resumes
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from step 2" in resumed.stderr + resumed.stdout
    fresh = astropt_train(*small, "--set", "max_iters=1", "--fresh")  # ignores the checkpoint
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert [(a["resumed_from"], a["first_step"], a["last_step"]) for a in read_attempts(out)] == [
        (None, 1, 2),
        (2, 3, 3),
        (None, 1, 1),
    ]
