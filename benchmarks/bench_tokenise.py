"""Tokenising throughput (galaxies/s) with 1 and 2 processes, and bytes per galaxy on disk (#24).

    PYTHONPATH=. python benchmarks/bench_tokenise.py --data /tmp/mock1k --limit 512 --repeats 3

Runs ``astropt tokenise`` on a local directory (a mock written with ``astropt data synth`` when
``--data`` is not given) as 1 process, then as 2 processes (``--rank 0/1 --world-size 2``,
started together; the last to finish writes the manifest), each into a fresh directory, and
reports per configuration the wall-clock galaxies/s (process start and codec load included),
the encode rate the library reports (galaxies/s while the codec runs), and bytes per galaxy
of the finished data set. ``--device cuda`` measures a GPU. CPU threads are split between
the processes (``OMP_NUM_THREADS`` = cores / processes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(procs: int, data: str, out: Path, args: argparse.Namespace) -> dict[str, float]:
    threads = max(1, (os.cpu_count() or 2) // procs)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(threads),
    }
    base = [
        sys.executable,
        "-m",
        "astropt.cli",
        "tokenise",
        "--source",
        "local",
        "--path",
        data,
        "--out",
        str(out),
        "--codec",
        args.codec,
        "--device",
        args.device,
        "--num-workers",
        str(args.num_workers),
        "--batch-size",
        str(args.batch_size),
        "--no-progress",
        "--world-size",
        str(procs),
    ]
    if args.limit:
        base += ["--limit", str(args.limit)]
    started = time.perf_counter()
    running = [
        subprocess.Popen(
            [*base, "--rank", str(r)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for r in range(procs)
    ]
    reports = []
    for p in running:
        stdout, stderr = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(stderr[-3000:])
        reports.append(json.loads(stdout[stdout.index("{") : stdout.rindex("}") + 1]))
    wall = time.perf_counter() - started
    manifest = json.loads((out / "manifest.json").read_text())
    n = manifest["n_galaxies"]
    return {
        "procs": procs,
        "n": n,
        "wall_s": round(wall, 2),
        "galaxies_per_s": round(n / wall, 2),
        "encode_galaxies_per_s": round(sum(r["galaxies_per_s"] for r in reports), 2),
        "bytes_per_galaxy": round(manifest["bytes"] / n, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", help="local directory of galaxies (default: a fresh mock of --n)")
    ap.add_argument("--n", type=int, default=256, help="mock galaxies when --data is not given")
    ap.add_argument("--limit", type=int, default=None, help="tokenise only the first N galaxies")
    ap.add_argument("--procs", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--codec", default="shipped")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--num-workers", type=int, default=1, help="DataLoader workers per process")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-tokenise-") as tmp:
        data = args.data
        if data is None:
            data = str(Path(tmp) / "mock")
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "astropt.cli",
                    "data",
                    "synth",
                    "--n",
                    str(args.n),
                    "--out",
                    data,
                    "--no-progress",
                ],
                check=True,
                cwd=REPO,
                capture_output=True,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        results = []
        for r in range(args.repeats):
            for procs in args.procs:
                row = {
                    **run(procs, data, Path(tmp) / f"tokens-{procs}-{r}", args),
                    "repeat": r,
                    "device": args.device,
                    "codec": args.codec,
                    "num_workers": args.num_workers,
                }
                print(json.dumps(row), flush=True)
                results.append(row)
        for procs in args.procs:
            rates = [x["galaxies_per_s"] for x in results if x["procs"] == procs]
            enc = [x["encode_galaxies_per_s"] for x in results if x["procs"] == procs]
            print(
                f"{procs} process(es): {min(rates)}-{max(rates)} galaxies/s wall (median {statistics.median(rates)}), "
                f"encode {min(enc)}-{max(enc)} galaxies/s; {results[-1]['bytes_per_galaxy']} bytes/galaxy"
            )


if __name__ == "__main__":
    main()
