"""The GPU lane's figures in one table: training MFU and tokens/s (1 process, and N where there
are N GPUs), codec galaxies/s on the device, and peak GPU memory.

    .venv/bin/python benchmarks/bench_gpu_lane.py                 # what scripts/gpu-check runs
    .venv/bin/python benchmarks/bench_gpu_lane.py --size small    # a quicker look

Training figures come from benchmarks/bench_gpu_training.py (the real loop: bf16, compile,
fused AdamW, DDP over NCCL); the codec figure encodes batches of mock-sized cut-outs with the
aion-base architecture (random weights: the hub is not needed; the speed is the architecture's).
Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def training_rows(size: str, iters: int) -> list[dict]:
    procs = ["1"] + ([str(torch.cuda.device_count())] if torch.cuda.device_count() > 1 else [])
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "bench_gpu_training.py"),
            "--size",
            size,
            "--iters",
            str(iters),
            "--procs",
            *procs,
        ],
        capture_output=True,
        text=True,
        timeout=480,
    )
    rows = []
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            rows.append(json.loads(line))
    if not rows:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
    return rows


AION_BASE_SHAPE = {"hidden_dims": 512, "num_consecutive": 4}  # ~70 M parameters, REFERENCE.md


def codec_rate(architecture: str, batch: int, batches: int) -> dict:
    from astropt.codec.handle import CodecHandle
    from astropt.codec.info import CodecInfo
    from astropt.codec.layout import fingerprint, random_codec

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = random_codec(0, **(AION_BASE_SHAPE if architecture == "aion-base" else {}))
    codec = CodecHandle(
        module, CodecInfo(f"random {architecture}", "random", fingerprint(module), False), device
    )
    flux = torch.rand(batch, 4, 152, 152).numpy()
    codec.encode(flux.copy(), ("DES-G", "DES-R", "DES-I", "DES-Z"))  # warm-up (kernels, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(batches):
        codec.encode(flux.copy(), ("DES-G", "DES-R", "DES-I", "DES-Z"))
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    return {"codec": architecture, "galaxies_per_s": batch * batches / seconds, "peak_bytes": peak}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size", default="seed", help="bench_gpu_training.py size (seed: 12 x 768)"
    )
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument(
        "--codec",
        choices=["aion-base", "small"],
        default="aion-base",
        help="codec architecture, random weights (small: the shipped codec's shape)",
    )
    parser.add_argument("--codec-batch", type=int, default=64)
    args = parser.parse_args()
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    rows = training_rows(args.size, args.iters)
    codec = codec_rate(args.codec, args.codec_batch, 10)
    print(f"\nGPU lane on {name} (torch {torch.__version__})")
    print(f"{'what':34} {'tokens/s':>12} {'MFU':>7} {'galaxies/s':>11} {'peak GiB':>9}")
    for row in rows:
        print(
            f"{'train ' + args.size + ' x' + str(row.get('procs')) + ' proc':34} "
            f"{row.get('tokens_per_s') or 0:12,.0f} {row.get('mfu') or 0:7.1%} {'':>11} "
            f"{row.get('gpu_memory_peak_gib') or 0:9.2f}"
        )
    print(
        f"{'codec encode ' + args.codec:34} {codec['galaxies_per_s'] * 576:12,.0f} {'':>7} "
        f"{codec['galaxies_per_s']:11,.1f} {(codec['peak_bytes'] or 0) / 2**30:9.2f}"
    )


if __name__ == "__main__":
    main()
