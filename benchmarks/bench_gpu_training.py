"""Training throughput and MFU for 1 vs N processes, ready for a GPU node; tiny on CPU.

    python benchmarks/bench_gpu_training.py --size 100m --procs 1 8          # an 8-GPU node
    python benchmarks/bench_gpu_training.py --size small --procs 1 2 --device cpu
    python benchmarks/bench_gpu_training.py --size tiny --procs 1 --iters 4 --device cpu   # CI

Runs the real training loop (``astropt.training.train``), so the GPU path is the one jobs
take: bf16 autocast, ``torch.compile``, fused AdamW, TF32 matmuls, attention through
``scaled_dot_product_attention`` (flash kernels), DDP over NCCL for N > 1 (gloo on CPU).
Tokens come from the token cache (the mock is tokenised once), so the codec is out of the
loop. Each process count runs in fresh processes (``torchrun --standalone`` for N > 1); the
figures are medians over the second half of the logged steps (after compilation warm-up).
Prints one JSON line per run, then a table. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 576},
        "batch_size": 2,
        "n_mock": 32,
    },
    "small": {
        "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 576},
        "batch_size": 8,
        "n_mock": 256,
    },
    # The seed's GPU configuration (astropt/configs/gpu-aion-base.yaml shape): ~85 M parameters.
    "seed": {
        "model": {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024},
        "batch_size": 16,
        "n_mock": 2048,
    },
    "100m": {
        "model": {"n_layer": 14, "n_head": 12, "n_embd": 768, "block_size": 1024},
        "batch_size": 16,
        "n_mock": 2048,
    },
}


def train_config(size: str, iters: int, device: str, out_dir: Path, codec: str) -> dict[str, Any]:
    shape = SIZES[size]
    return {
        "out_dir": str(out_dir),
        "codec": codec,
        "model": shape["model"],
        "data": {
            "source": "mock",
            "n_mock": shape["n_mock"],
            "val_fraction": 0.1,
            "path": str(out_dir.parent / f"mock-{shape['n_mock']}"),
        },
        "batch_size": shape["batch_size"],
        "max_iters": iters,
        "eval_interval": 10 * iters,
        "eval_iters": 1,
        "log_interval": 1,
        "n_val_images": 0,
        "device": device,
        "optim": {"learning_rate": 3e-4, "warmup_iters": 1},
    }


def run_one(config: dict[str, Any], result_path: Path) -> None:
    """One process of a run (under torchrun when N > 1); rank 0 writes the figures."""
    from astropt.config import TrainConfig
    from astropt.training import TrainCallback, train

    class Figures(TrainCallback):
        def __init__(self) -> None:
            self.info: dict[str, Any] = {}
            self.logs: list[dict[str, float]] = []

        def on_start(self, info: dict[str, Any]) -> None:
            self.info = info

        def on_log(self, step: int, metrics: dict[str, float]) -> None:
            self.logs.append(metrics)

    figures = Figures()
    train(TrainConfig.model_validate(config), [figures], resume=False)
    if not figures.logs:  # not rank 0
        return
    steady = figures.logs[len(figures.logs) // 2 :]

    def median(key: str) -> float | None:
        values = [m[key] for m in steady if m.get(key) is not None]
        return statistics.median(values) if values else None

    info = figures.info
    result_path.write_text(
        json.dumps(
            {
                "world_size": info.get("world_size"),
                "device": info.get("device"),
                "dtype": info.get("dtype"),
                "compile": info.get("compile"),
                "n_params": info.get("n_params"),
                "peak": info.get("peak"),
                "tokens_per_s": median("tokens_per_s"),
                "mfu": median("mfu"),
                "model_tflops_per_s": (median("model_flops_per_s") or 0) / 1e12,
                "gpu_memory_peak_gib": (
                    max((m.get("gpu_memory_peak_bytes") or 0) for m in figures.logs) / 2**30
                )
                or None,
                "iter_time_s": median("iter_time_s"),
            }
        )
    )


def launch(procs: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    out = work / f"run-{procs}"
    config = train_config(args.size, args.iters, args.device, out, args.codec)
    config_path, result_path = work / f"config-{procs}.json", work / f"result-{procs}.json"
    config_path.write_text(json.dumps(config))
    me = [str(Path(__file__).resolve()), "--worker", str(config_path), str(result_path)]
    if procs == 1:
        command = [sys.executable, *me]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={procs}",
            *me,
        ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "ASTROPT_DATA_DIR": str(work / "cache"),
    }
    subprocess.run(command, env=env, check=True)
    return {"procs": procs, "size": args.size, **json.loads(result_path.read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="seed")
    parser.add_argument(
        "--procs", type=int, nargs="+", default=[1], help="process counts to compare"
    )
    parser.add_argument("--iters", type=int, default=40, help="optimiser steps per run")
    parser.add_argument("--device", default="auto", help="auto (GPUs when present), cpu, cuda")
    parser.add_argument("--codec", default="random:0", help="codec that fills the token cache")
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_one(json.loads(Path(args.worker[0]).read_text()), Path(args.worker[1]))
        return
    with tempfile.TemporaryDirectory(prefix="astropt-bench-") as tmp:
        work = Path(tmp)
        launch(
            1, argparse.Namespace(**{**vars(args), "iters": 1}), work
        )  # fill the token cache once
        results = []
        for procs in args.procs:
            results.append(launch(procs, args, work))
            print(json.dumps(results[-1]), flush=True)
    print(
        f"\n{'procs':>5} {'tokens/s':>12} {'per proc':>10} {'MFU':>7} {'TFLOP/s':>8} {'GPU mem GiB':>11}"
    )
    for r in results:
        mfu = "unknown" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        mem = "-" if r["gpu_memory_peak_gib"] is None else f"{r['gpu_memory_peak_gib']:.1f}"
        print(
            f"{r['procs']:>5} {r['tokens_per_s']:>12.0f} {r['tokens_per_s'] / r['procs']:>10.0f} {mfu:>7} "
            f"{r['model_tflops_per_s']:>8.3f} {mem:>11}"
        )
    print(f"peak: {results[0]['peak']}")


if __name__ == "__main__":
    main()
