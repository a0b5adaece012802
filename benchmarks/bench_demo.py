"""Candidates for the job `astropt serve --demo` runs: wall time and validation loss, measured.

    python benchmarks/bench_demo.py [--candidate NAME ...] [--threads N] [--out runs/bench-demo]
    python benchmarks/bench_demo.py --serve 8000     # the real thing: `astropt serve --demo`, timed

Each candidate is a job spec as POST /jobs takes it, trained here in-process as the worker trains it
(the spec as a TrainConfig), with a fresh ASTROPT_DATA_DIR so that the mock galaxies are
simulated and tokenised cold, as on a fresh clone. Reports per candidate: the wall time (data
preparation included), the time to the first evaluation, every validation loss, the step of the
best checkpoint, and the CPU time (all threads; less load-dependent than the wall time on a shared
machine). Not a test: timings depend on the machine and its load (printed with them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from astropt.checkpoints import read_meta
from astropt.checkpoints.shipped import SHIPPED_MODEL_DIR

# The service's current demo first: the shipped model trained on for 40 steps.
CANDIDATES: dict[str, dict[str, Any]] = {
    "shipped-warm-start-40": {
        "init_from": "shipped",
        "data": {"source": "mock", "n_mock": 64, "val_fraction": 0.125},
        "batch_size": 4,
        "max_iters": 40,
        "eval_interval": 20,
        "eval_iters": 2,
        "log_interval": 2,
        "checkpoint_interval": 20,
        "n_val_images": 4,
        "optim": {"learning_rate": 0.0003, "warmup_iters": 10},
        "device": "cpu",
    },
}


def scratch(
    n_layer: int,
    n_embd: int,
    iters: int,
    lr: float,
    n_mock: int = 256,
    batch: int = 8,
    eval_interval: int = 20,
) -> dict[str, Any]:
    """A model of the shipped model's family trained from random weights on the shipped codec."""
    return {
        "codec": "shipped",
        "model": {"n_layer": n_layer, "n_head": 4, "n_embd": n_embd, "block_size": 576},
        "data": {"source": "mock", "n_mock": n_mock, "val_fraction": 0.125},
        "batch_size": batch,
        "max_iters": iters,
        "eval_interval": eval_interval,
        "eval_iters": 2,
        "log_interval": 5,
        "checkpoint_interval": eval_interval,
        "n_val_images": 4,
        "optim": {"learning_rate": lr, "warmup_iters": 10, "weight_decay": 0.1, "grad_clip": 1.0},
        "device": "cpu",
    }


CANDIDATES |= {
    "scratch-2x64-b8-160-lr3e-3": scratch(2, 64, 160, 3e-3),
    "scratch-2x64-b8-100-lr5e-3": scratch(2, 64, 100, 5e-3),
    "scratch-2x64-b4-160-lr3e-3": scratch(2, 64, 160, 3e-3, batch=4),
    "scratch-2x64-b4-120-lr5e-3": scratch(2, 64, 120, 5e-3, batch=4),
    "scratch-1x64-b4-120-lr5e-3": scratch(1, 64, 120, 5e-3, batch=4),
}


def candidates() -> dict[str, dict[str, Any]]:
    """The ones above, and "demo": DEMO_JOB as service/jobs/schemas.py has it now."""
    from service.jobs.schemas import DEMO_JOB

    return {"demo": DEMO_JOB, **CANDIDATES}


def run(name: str, spec: dict[str, Any], out_root: Path) -> dict[str, Any]:
    from astropt.config import TrainConfig
    from astropt.training import TrainCallback, train

    class Record(TrainCallback):
        def __init__(self) -> None:
            self.evals: list[tuple[int, float, float]] = []
            self.best_step: int | None = None

        def on_eval(self, step: int, metrics: dict[str, float]) -> None:
            self.evals.append((step, metrics["val_loss"], time.perf_counter() - t0))
            print(
                f"  {name}: step {step:4d}  t={self.evals[-1][2]:6.1f}s  val {metrics['val_loss']:.4f}",
                flush=True,
            )

        def on_checkpoint(self, step: int, path: str, kind: str) -> None:
            if kind == "best":
                self.best_step = step

    body = json.loads(json.dumps(spec))
    if (
        body.get("init_from") == "shipped"
    ):  # what the service resolves: the directory, its shape and codec
        body["init_from"] = str(SHIPPED_MODEL_DIR)
        body.setdefault("codec", "shipped")
        shape = read_meta(SHIPPED_MODEL_DIR)["model_args"]
        body.setdefault(
            "model", {k: shape[k] for k in ("n_layer", "n_head", "n_embd", "block_size")}
        )
    body["out_dir"] = str(out_root / name)
    config = TrainConfig.model_validate(body)
    record = Record()
    t0, cpu0 = time.perf_counter(), time.process_time()
    result = train(config, [record], resume=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    first, last = record.evals[0], record.evals[-1]
    return {
        "name": name,
        "status": result.status,
        "steps": result.step,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),  # all threads: on a quiet machine wall ~ cpu / threads at best
        "first_eval_s": round(first[2], 1),
        "val_loss": [(step, round(value, 4)) for step, value, _ in record.evals],
        "first_val_loss": round(first[1], 4),
        "last_val_loss": round(last[1], 4),
        "best_val_loss": round(result.best_val_loss or float("nan"), 4),
        "best_step": record.best_step,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def serve_demo(port: int) -> dict[str, Any]:
    """`astropt serve --demo` as a newcomer runs it (fresh data directory, torch's default
    threads): seconds from the command to the demo job's completion, and its curve."""
    import signal
    import subprocess
    import sys

    import httpx

    data_dir = Path(tempfile.mkdtemp(prefix="bench-serve-demo-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ASTROPT_") and k != "OMP_NUM_THREADS"
    }
    env.update(ASTROPT_DATA_DIR=str(data_dir / "data"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    log_path = data_dir / "serve.log"
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--demo", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        job: dict[str, Any] = {}
        while job.get("phase") not in ("completed", "failed", "cancelled"):
            time.sleep(1.0)
            if process.poll() is not None:
                raise RuntimeError(f"serve exited: {log_path.read_text()[-3000:]}")
            try:
                items = httpx.get(f"{base}/jobs", timeout=10).json()["items"]
                job = httpx.get(f"{base}/jobs/{items[0]['id']}", timeout=10).json() if items else {}
            except httpx.HTTPError:
                continue
        wall = time.perf_counter() - t0
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    val = job["curves"]["val_loss"]
    best = next((c["step"] for c in job["checkpoints"] if c["name"] == "best"), None)
    report = {
        "name": "serve --demo",
        "phase": job["phase"],
        "wall_s": round(wall, 1),
        "val_loss": [
            (step, round(value, 4)) for step, value in zip(val["steps"], val["values"], strict=True)
        ],
        "first_val_loss": round(val["values"][0], 4),
        "last_val_loss": round(val["values"][-1], 4),
        "best_step": best,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "output_head": log_path.read_text(errors="replace").splitlines()[:14],
    }
    shutil.rmtree(data_dir, ignore_errors=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--candidate",
        action="append",
        choices=sorted(candidates()),
        default=None,
        help="default: all",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-demo"))
    parser.add_argument(
        "--serve",
        type=int,
        metavar="PORT",
        default=None,
        help="instead: time `astropt serve --demo` end to end on PORT",
    )
    args = parser.parse_args()
    if args.serve is not None:
        print(json.dumps(serve_demo(args.serve), indent=2))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    reports = []
    specs = candidates()
    for name in args.candidate or list(specs):
        data_dir = Path(tempfile.mkdtemp(prefix="bench-demo-"))
        os.environ["ASTROPT_DATA_DIR"] = str(data_dir)  # cold token cache, as on a fresh clone
        try:
            reports.append(run(name, specs[name], args.out))
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
        print(json.dumps(reports[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(reports, indent=2) + "\n")


if __name__ == "__main__":
    main()
