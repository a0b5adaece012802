"""Shared test setup: no hub access, deterministic single-threaded torch."""

import os
import tempfile
from pathlib import Path

import pytest

# Under pytest-xdist each worker gets its own temporary root: the worker processes a test
# starts lease "devices" through lock files there (worker/launch/devices.py), and two test
# stacks on one machine must not take each other's.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _own = Path(tempfile.gettempdir()) / f"astropt-tests-{os.environ['PYTEST_XDIST_WORKER']}"
    _own.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(_own)
    tempfile.tempdir = None

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")


# Under `--dist loadfile` pytest-xdist hands out whole modules, by default the ones with the most
# tests first: the end-to-end modules (a few tests, minutes each) then came last, and one worker ran
# the longest of them alone at the end. Instead the modules measured longest go first, longest
# first, then the other slow modules, then the rest (most tests first, as xdist would); a module's
# own tests keep their order. Seconds: one worker's time per module, the slow lane on 2 cores under
# load 8 (issue #23); only the order matters.
LONGEST_FIRST = (
    "tests/worker/test_distributed_jobs.py",  # 1020 s
    "tests/service/test_demo.py",  # 780 s
    "tests/worker/test_tokenise_jobs.py",  # 450 s
    "tests/worker/test_embed_jobs.py",  # 360 s
    "tests/worker/test_training_jobs.py",  # 360 s
    "tests/worker/test_slurm_executor.py",  # 340 s
    "tests/service/test_standalone.py",  # 330 s
    "tests/service/test_faults.py",  # 325 s
    "tests/worker/test_job_faults.py",  # 280 s
    "tests/astropt/test_train_patch_mae.py",  # 250 s
    "tests/astropt/test_train.py",  # 240 s
    "tests/astropt/test_finetune.py",  # 240 s
    "tests/service/test_client_cli.py",  # 205 s
    "tests/ui/test_dashboard_browser.py",  # 205 s
    "tests/service/test_openapi_fuzz.py",  # 165 s
    "tests/astropt/test_cli_train.py",  # 160 s
    "tests/worker/test_finetune_jobs.py",  # 155 s
    "tests/ui/test_catalogue_browser.py",  # 140 s
    "tests/astropt/test_live_probe.py",  # 140 s
    "tests/astropt/test_token_datasets.py",  # 140 s
    "tests/worker/test_patch_jobs.py",  # 125 s
    "tests/worker/test_placement.py",  # 120 s
    "tests/service/test_catalogue_galaxies.py",  # 115 s
    "tests/service/test_hardening.py",  # 110 s
    "tests/service/test_users.py",  # 110 s
    "tests/benchmarks/test_bench_gpu_training.py",  # 110 s
)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the order set below
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)

    def rank(module: str) -> tuple[int, int]:
        if module in LONGEST_FIRST:
            return (0, LONGEST_FIRST.index(module))
        tests = modules[module]
        slow = any(item.get_closest_marker("slow") for item in tests)
        return (1 if slow else 2, -len(tests))

    items[:] = [item for module in sorted(modules, key=rank) for item in modules[module]]
