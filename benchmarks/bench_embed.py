"""Embedding throughput (galaxies/s) and peak memory of ``embed_catalogue`` as the data set grows.

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/bench_embed.py --sizes 1000 10000 --threads 1

Each size runs in a fresh subprocess (so its peak RSS is its own): the mock set is generated
first (not timed; cached in ``--work``), then the shipped model (or ``--model``) embeds it,
mean pooling, batch 16, shards of 1024 rows. Reported: embedding seconds, galaxies/s, the
process's peak RSS after loading (model, codec and the opened source) and after embedding,
and the catalogue's size on disk. Flat memory means the second peak hardly grows with N.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def one(n: int, work: Path, model_dir: str, threads: int, batch: int) -> dict:
    from astropt.science import EmbedOptions, SourceSpec, embed_catalogue, load_embed_model
    from astropt.science.sources import open_source
    from astropt.torch_policy import set_threads

    set_threads(threads)
    source = SourceSpec("mock", n=n, seed=777, path=str(work / f"mock-{n}"))
    open_source(source)  # generate the mock (cached) before anything is measured
    model = load_embed_model(model_dir)
    loaded_mb = peak_rss_mb()
    out = work / f"cat-{n}"
    start = time.perf_counter()
    result = embed_catalogue(model, source, out, EmbedOptions(pool="mean", batch_size=batch), shard_rows=1024)
    seconds = time.perf_counter() - start
    return {"n": n, "seconds": round(seconds, 1), "galaxies_per_s": round(n / seconds, 1),
            "peak_rss_loaded_mb": round(loaded_mb), "peak_rss_mb": round(peak_rss_mb()),
            "catalogue_mb": round((out / "catalogue.parquet").stat().st_size / 2**20, 2),
            "count": result.count, "threads": threads, "batch_size": batch}


def main() -> None:
    from astropt.checkpoints.shipped import SHIPPED_MODEL_DIR

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--model", default=str(SHIPPED_MODEL_DIR))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--work", type=Path, default=Path("bench-embed"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the subprocess of one size
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(one(args.one, args.work, args.model, args.threads, args.batch_size)))
        return
    rows = []
    for n in args.sizes:
        done = subprocess.run([sys.executable, __file__, "--one", str(n), "--model", args.model, "--threads",
                               str(args.threads), "--batch-size", str(args.batch_size), "--work", str(args.work)],
                              check=True, capture_output=True, text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print("| galaxies | embed s | galaxies/s | peak RSS loaded (MB) | peak RSS after (MB) | catalogue (MB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']} | {r['seconds']} | {r['galaxies_per_s']} | {r['peak_rss_loaded_mb']} | "
              f"{r['peak_rss_mb']} | {r['catalogue_mb']} |")


if __name__ == "__main__":
    main()
