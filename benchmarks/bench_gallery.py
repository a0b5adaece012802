"""What the pictures cost: a gallery of 64 cut-outs, and the thumbnail map of a 10k catalogue.

    PYTHONPATH=. python benchmarks/bench_gallery.py --objects 10000 --grid 32 --repeats 5

A mock catalogue (random 64-d embeddings, rows that are mock galaxies of one seed: their images
are made again from the seed, as for an embed job of the mock) is written to a temporary
directory and served through the service layer's own functions. Reported: the p50 time of a
gallery PNG of 64 cut-outs (images read and drawn each time), of one cut-out drawn and of one
read from the disk cache; and for the thumbnail map, the time of the layout (PCA, cells), of
the sheet drawn cold and read warm, and the process's peak memory.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from astropt.data.mock import object_id
from astropt.science import write_catalogue


def p50(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--grid", type=int, default=32)
    parser.add_argument("--tile", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from service.catalogues import galaxies, thumbnail_maps
    from service.catalogues.service import load
    from state.settings import Settings

    seed = 31337
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        ids = [object_id(seed, i) for i in range(args.objects)]
        path = write_catalogue(
            Path(tmp) / "cat",
            ids,
            rng.normal(size=(args.objects, 64)).astype(np.float32),
            {},
            {"data_source": {"kind": "mock", "seed": seed, "n": args.objects}},
        )
        settings = Settings(data_dir=Path(tmp))
        load(path)
        result = galaxies.gallery(settings, path, "bench", "outliers", 64, "knn_cosine")
        gallery = p50(lambda: galaxies.gallery_png(path, result), args.repeats)
        drawn = p50(
            lambda: galaxies.cutout(path, "bench", ids[int(rng.integers(args.objects))]),
            args.repeats * 4,
        )
        galaxies.cutout(path, "bench", ids[0])
        cached = p50(lambda: galaxies.cutout(path, "bench", ids[0]), args.repeats * 4)
        started = time.perf_counter()
        layout = thumbnail_maps.layout(settings, path, "bench", "pca", args.grid, args.tile)
        laid = time.perf_counter() - started
        started = time.perf_counter()
        thumbnail_maps.sheet(settings, path, "pca", args.grid, args.tile)
        cold = time.perf_counter() - started
        warm = p50(
            lambda: thumbnail_maps.sheet(settings, path, "pca", args.grid, args.tile), args.repeats
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"gallery of 64 cut-outs (read + drawn): p50 {gallery:.2f} s; one cut-out drawn: p50 {drawn * 1000:.0f} ms, "
        f"from the disk cache: p50 {cached * 1000:.1f} ms"
    )
    print(
        f"thumbnail map of {args.objects} objects, {args.grid}x{args.grid} cells ({len(layout['cells'])} shown, "
        f"{args.tile} px): layout {laid:.2f} s, sheet cold {cold:.1f} s, warm p50 {warm * 1000:.1f} ms; "
        f"peak RSS {peak_mb:.0f} MB"
    )


if __name__ == "__main__":
    main()
