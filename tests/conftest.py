"""Shared test setup: no hub access, deterministic single-threaded torch."""

import os
import tempfile
from pathlib import Path

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
