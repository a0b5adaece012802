"""P2 of #24: peak memory against data set size, and step time from tokens against the token cache.

    PYTHONPATH=. python benchmarks/bench_token_memory.py train-tokens --sizes 10000 100000
    PYTHONPATH=. python benchmarks/bench_token_memory.py tokenise-raw --data 1k=/tmp/mock1k 8k=/tmp/mock8k
    PYTHONPATH=. python benchmarks/bench_token_memory.py train-raw --data 1k=/tmp/mock1k 8k=/tmp/mock8k
    PYTHONPATH=. python benchmarks/bench_token_memory.py step-time --data /tmp/mock1k --repeats 3

Each measurement is a separate ``astropt`` process under ``/usr/bin/time -v`` (its "Maximum
resident set size"); one CPU thread, the shipped codec, a 1-layer 32-wide model, 5 steps.

- ``train-tokens``: ``astropt train`` from token data sets of each size, synthesised directly
  (tokens drawn at random, written with the real shard writer and manifest);
- ``tokenise-raw``: ``astropt tokenise`` of raw local directories (e.g. 1,000 and 8,000 mock galaxies);
- ``train-raw``: ``astropt train`` on the same directories through the finite token cache;
- ``step-time``: the same training run from the token data set of a directory and from the
  in-memory token cache of that directory (warm), median seconds per step of each;
- ``batch-read``: in one process, the time ``TokenBatches.batch`` takes to hand the training
  loop a batch from a synthesised token data set (``--sizes``) and from the same tokens as an
  in-memory tensor (what the token cache holds): the data part of a step, without the model.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRAIN_FLAGS = [
    "--set",
    "codec=shipped",
    "--set",
    "max_iters=5",
    "--set",
    "eval_interval=5",
    "--set",
    "eval_iters=1",
    "--set",
    "n_val_images=0",
    "--set",
    "batch_size=4",
    "--set",
    "model.n_layer=1",
    "--set",
    "model.n_embd=32",
    "--set",
    "model.n_head=2",
    "--set",
    "num_threads=1",
    "--set",
    "log_interval=1",
]


def run_timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """``(peak RSS in MB, wall seconds)`` of ``astropt ARGS``."""
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "astropt.cli", *args]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return int(peak.group(1)) / 1024, wall


def environment(scratch: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "ASTROPT_DATA_DIR": str(scratch / "data"),
        "HF_DATASETS_CACHE": str(scratch / "hf"),
    }


def synthesise(out: Path, n: int, shard_size: int = 4096, seed: int = 0) -> None:
    """A token data set of ``n`` random galaxies, written as ``tokenise`` writes one."""
    from astropt.codec import load_codec
    from astropt.tokens.format import (
        FORMAT,
        FORMAT_VERSION,
        progress_name,
        shard_name,
        write_json_atomic,
        write_shard,
    )
    from astropt.tokens.make import finalize_manifest

    info = load_codec("shipped").info.to_dict()
    rng = np.random.default_rng(seed)
    shards = []
    for index, lo in enumerate(range(0, n, shard_size)):
        rows = min(shard_size, n - lo)
        tokens = rng.integers(0, 10_000, size=(rows, 576), dtype=np.int16)
        ids = [f"syn-{i:09d}" for i in range(lo, lo + rows)]
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "rank": 0, "index": index}
        shards.append(
            {
                **write_shard(out, shard_name(0, index), ids, tokens, {}, meta),
                "rank": 0,
                "index": index,
            }
        )
    key = {
        "source": {"kind": "synthetic", "n": n, "seed": seed},
        "codec_fingerprint": info["fingerprint"],
        "shard_size": shard_size,
        "world_size": 1,
        "columns": [],
        "limit": None,
        "bands": ["DES-G", "DES-R", "DES-I", "DES-Z"],
        "val_independent": True,
    }
    write_json_atomic(
        out / progress_name(0),
        {
            "rank": 0,
            "world_size": 1,
            "key": key,
            "codec": info,
            "job_id": None,
            "shards": shards,
            "complete": True,
        },
    )
    finalize_manifest(out)


def batch_read(scratch: Path, args: argparse.Namespace) -> list[dict]:
    from astropt.tokens import open_token_dataset
    from astropt.tokens.splits import split_rows
    from astropt.training.batches import TokenBatches

    rows = []
    for n in args.sizes:
        synthesise(scratch / f"read-{n}", n)
        ds = open_token_dataset(scratch / f"read-{n}")
        on_disk = split_rows(ds, "train", 0.05)
        in_memory = on_disk.head(len(on_disk))  # Long[N, 576], as the token cache holds it
        for r in range(args.repeats):
            for label, source in (("in-memory", in_memory), ("token data set", on_disk)):
                batches = TokenBatches(source, args.batch, seed=r)
                count = 2000
                started = time.perf_counter()
                for index in range(count):
                    batches.batch(index)
                micro = (time.perf_counter() - started) / count * 1e6
                rows.append(
                    {
                        "mode": "batch-read",
                        "n": n,
                        "source": label,
                        "repeat": r,
                        "us_per_batch": round(micro, 1),
                        "batch": args.batch,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def step_seconds(run: Path) -> float:
    with (run / "loss.csv").open() as fh:
        rates = [float(r["tokens_per_s"]) for r in csv.DictReader(fh) if r["tokens_per_s"]]
    tokens_per_step = 4 * 575
    return statistics.median(tokens_per_step / r for r in rates[1:])  # the first step warms up


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "mode", choices=["train-tokens", "tokenise-raw", "train-raw", "step-time", "batch-read"]
    )
    ap.add_argument("--batch", type=int, default=8, help="batch-read: galaxies a batch")
    ap.add_argument(
        "--sizes", type=int, nargs="*", default=[10_000, 100_000], help="train-tokens: galaxies"
    )
    ap.add_argument(
        "--data", nargs="*", default=[], help="LABEL=DIR raw local directories (step-time: one DIR)"
    )
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30, help="step-time: training steps per run")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-token-memory-") as tmp:
        scratch = Path(tmp)
        env = environment(scratch)
        rows = []
        if args.mode == "train-tokens":
            for n in args.sizes:
                ds = scratch / f"tokens-{n}"
                synthesise(ds, n)
                for r in range(args.repeats):
                    peak, wall = run_timed(
                        [
                            "train",
                            "--fresh",
                            "--out",
                            str(scratch / f"run-{n}-{r}"),
                            *TRAIN_FLAGS,
                            "--set",
                            "data.source=tokens",
                            "--set",
                            f"data.path={ds}",
                        ],
                        env,
                    )
                    rows.append(
                        {
                            "mode": args.mode,
                            "n": n,
                            "peak_rss_mb": round(peak),
                            "wall_s": round(wall, 1),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
        elif args.mode == "batch-read":
            rows = batch_read(scratch, args)
        elif args.mode in ("tokenise-raw", "train-raw"):
            for item in args.data:
                label, _, directory = item.partition("=")
                for r in range(args.repeats):
                    out = scratch / f"{args.mode}-{label}-{r}"
                    if args.mode == "tokenise-raw":
                        command = [
                            "tokenise",
                            "--source",
                            "local",
                            "--path",
                            directory,
                            "--out",
                            str(out),
                            "--no-progress",
                            "--set",
                            "num_workers=2",
                        ]
                    else:
                        command = [
                            "train",
                            "--fresh",
                            "--out",
                            str(out),
                            *TRAIN_FLAGS,
                            "--set",
                            "data.source=local",
                            "--set",
                            f"data.path={directory}",
                        ]
                        env = {**env, "ASTROPT_DATA_DIR": str(scratch / f"data-{label}-{r}")}
                    peak, wall = run_timed(command, env)
                    rows.append(
                        {
                            "mode": args.mode,
                            "data": label,
                            "peak_rss_mb": round(peak),
                            "wall_s": round(wall, 1),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
        else:
            directory = args.data[0].partition("=")[2] or args.data[0]
            ds = scratch / "tokens"
            run_timed(
                [
                    "tokenise",
                    "--source",
                    "local",
                    "--path",
                    directory,
                    "--out",
                    str(ds),
                    "--no-progress",
                ],
                env,
            )
            steps = ["--set", f"max_iters={args.steps}", "--set", f"eval_interval={args.steps}"]
            run_timed(
                [
                    "train",
                    "--fresh",
                    "--out",
                    str(scratch / "warm"),
                    *TRAIN_FLAGS,
                    *steps,  # fills the cache
                    "--set",
                    "data.source=local",
                    "--set",
                    f"data.path={directory}",
                ],
                env,
            )
            for r in range(args.repeats):
                for label, data in (
                    ("cache", ["--set", "data.source=local", "--set", f"data.path={directory}"]),
                    ("tokens", ["--set", "data.source=tokens", "--set", f"data.path={ds}"]),
                ):
                    run = scratch / f"{label}-{r}"
                    run_timed(
                        ["train", "--fresh", "--out", str(run), *TRAIN_FLAGS, *steps, *data], env
                    )
                    rows.append(
                        {
                            "mode": "step-time",
                            "source": label,
                            "repeat": r,
                            "step_s": round(step_seconds(run), 5),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
            for r in range(args.repeats):
                pair = {x["source"]: x["step_s"] for x in rows if x["repeat"] == r}
                print(
                    f"repeat {r}: tokens / cache step time = {pair['tokens'] / pair['cache']:.3f}"
                )


if __name__ == "__main__":
    main()
