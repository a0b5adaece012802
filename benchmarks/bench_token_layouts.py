"""Read speed of candidate on-disk layouts for a token data set (int16 AION tokens [N, 576]).

    PYTHONPATH=. python benchmarks/bench_token_layouts.py --n 65536 --shard 8192 --repeats 3

Writes the same tokens (drawn from the unigram distribution of real codec tokens of mock
galaxies, so compressed sizes are realistic) in each layout, ``--shard`` galaxies a file, and
times, per layout:

- ``open_s``: opening every shard (what a training run pays at start);
- ``seq_gal_s``: a full pass in order, every token touched (galaxies/s), with the files
  first dropped from the page cache (``posix_fadvise(DONTNEED)``: "cold") and again warm;
- ``rand_batch_s``: random batches of ``--batch`` galaxies drawn across all shards, the
  training loop's access pattern (batches/s, warm);
- ``bytes_per_galaxy`` on disk, and ``anon_mb_on_open``: the anonymous memory that opening
  every shard costs (about 0 when the tokens are a view of the mapped file, so memory stays
  flat in the data set size; the whole decoded data set otherwise), beside ``data_mb``.

Layouts: ``arrow-ipc`` (Feather v2 / Arrow IPC file, uncompressed, ``FixedSizeList<int16,
576>`` + ``object_id``, memory-mapped), ``arrow-ipc-lz4`` (the same, LZ4 frames: decoded on
read), ``parquet-zstd`` and ``parquet-none`` (read whole), ``npy`` (``np.load(mmap_mode="r")``
with ids in a sidecar). Prints one JSON line per layout and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

T = 576


def unigram(n_images: int) -> np.ndarray:
    """The token frequencies of the shipped codec over ``n_images`` mock galaxies."""
    from astropt.codec import load_codec
    from astropt.data import simulate

    codec = load_codec("shipped")
    flux = np.stack([g["flux"] for g in simulate(n_images, 0, 0)])
    tokens = codec.encode(flux).numpy().reshape(-1)
    counts = np.bincount(tokens, minlength=10_000).astype(np.float64) + 0.01
    return counts / counts.sum()


def fake_tokens(n: int, probs: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(len(probs), size=(n, T), p=probs).astype(np.int16)


def _table(tokens: np.ndarray, ids: list[str]) -> Any:
    import pyarrow as pa

    flat = pa.array(tokens.reshape(-1), type=pa.int16())
    return pa.table(
        {
            "object_id": pa.array(ids, pa.string()),
            "tokens": pa.FixedSizeListArray.from_arrays(flat, T),
        }
    )


# -- writers -----------------------------------------------------------------------------


def write_arrow(
    path: Path, tokens: np.ndarray, ids: list[str], compression: str | None = None
) -> None:
    import pyarrow as pa

    options = pa.ipc.IpcWriteOptions(compression=compression)
    with (
        pa.OSFile(str(path), "wb") as sink,
        pa.ipc.new_file(sink, _table(tokens, ids).schema, options=options) as w,
    ):
        w.write_table(_table(tokens, ids))


def write_parquet(path: Path, tokens: np.ndarray, ids: list[str], compression: str) -> None:
    import pyarrow.parquet as pq

    pq.write_table(_table(tokens, ids), str(path), compression=compression, use_dictionary=False)


def write_npy(path: Path, tokens: np.ndarray, ids: list[str]) -> None:
    np.save(path, tokens)
    path.with_suffix(".ids.json").write_text(json.dumps(ids))


# -- readers: each returns an int16 [n, 576] array per shard -------------------------------


def read_arrow(path: Path) -> np.ndarray:
    import pyarrow as pa

    table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
    column = table.column(
        "tokens"
    )  # one record batch a shard: chunk(0), never combine_chunks (a copy)
    values = column.chunk(0).flatten().to_numpy(zero_copy_only=not _compressed(path))
    return values.reshape(-1, T)


def _compressed(path: Path) -> bool:
    return "lz4" in path.name


def read_parquet(path: Path) -> np.ndarray:
    import pyarrow.parquet as pq

    column = (
        pq.read_table(str(path), columns=["tokens"], memory_map=True)
        .column("tokens")
        .combine_chunks()
    )
    return column.values.to_numpy(zero_copy_only=False).reshape(-1, T)


def read_npy(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r")


LAYOUTS: dict[str, tuple[str, Callable[..., None], Callable[[Path], np.ndarray]]] = {
    "arrow-ipc": (".arrow", lambda p, t, i: write_arrow(p, t, i), read_arrow),
    "arrow-ipc-lz4": (".lz4.arrow", lambda p, t, i: write_arrow(p, t, i, "lz4"), read_arrow),
    "parquet-zstd": (".parquet", lambda p, t, i: write_parquet(p, t, i, "zstd"), read_parquet),
    "parquet-none": (".none.parquet", lambda p, t, i: write_parquet(p, t, i, "none"), read_parquet),
    "npy": (".npy", write_npy, read_npy),
}


def anon_mb() -> float:
    """Anonymous (not file-backed) resident memory of this process: what a decoded copy costs."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _open_all(name: str, files: list[Path]) -> float:
    warm_up = LAYOUTS[name][2](
        files[-1]
    )  # the one-time set-up of the reader is not the layout's cost
    del warm_up
    before = anon_mb()
    held = [LAYOUTS[name][2](f) for f in files]  # opened, every row addressable, not yet touched
    grown = anon_mb() - before
    del held
    return grown


def open_cost_mb(name: str, files: list[Path]) -> float:
    """Measured in a fresh process: arrow's allocator keeps freed memory resident."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_open_all, name, files).result()


def drop_cache(files: list[Path]) -> None:
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def full_pass(files: list[Path], read: Callable[[Path], np.ndarray]) -> tuple[float, float, int]:
    started = time.perf_counter()
    arrays = [read(f) for f in files]
    opened = time.perf_counter() - started
    total, n = 0, 0
    for array in arrays:
        for lo in range(0, len(array), 4096):
            total += int(array[lo : lo + 4096].sum(dtype=np.int64))
        n += len(array)
    return opened, n / (time.perf_counter() - started), total


def random_batches(
    files: list[Path], read: Callable[[Path], np.ndarray], batch: int, n_batches: int
) -> float:
    arrays = [read(f) for f in files]
    offsets = np.cumsum([0] + [len(a) for a in arrays])
    rng = np.random.default_rng(1)
    started = time.perf_counter()
    for _ in range(n_batches):
        rows = rng.integers(0, offsets[-1], size=batch)
        shard = np.searchsorted(offsets, rows, side="right") - 1
        out = np.empty((batch, T), dtype=np.int64)
        for s in np.unique(shard):  # one fancy-indexing call per shard touched
            take = np.flatnonzero(shard == s)
            out[take] = arrays[s][rows[take] - offsets[s]]
    return n_batches / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=65536, help="galaxies in the data set")
    ap.add_argument("--shard", type=int, default=8192, help="galaxies per shard file")
    ap.add_argument("--batch", type=int, default=32, help="galaxies per random batch")
    ap.add_argument("--batches", type=int, default=2000, help="random batches timed")
    ap.add_argument(
        "--repeats", type=int, default=3, help="repeats of each measurement (median and range)"
    )
    ap.add_argument(
        "--unigram-images", type=int, default=64, help="mock galaxies for the token distribution"
    )
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temporary one)")
    args = ap.parse_args()

    probs = unigram(args.unigram_images)
    results = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        shards = [(lo, min(lo + args.shard, args.n)) for lo in range(0, args.n, args.shard)]
        data = [
            (fake_tokens(hi - lo, probs, seed=lo), [f"gal-{i:09d}" for i in range(lo, hi)])
            for lo, hi in shards
        ]
        for name, (suffix, write, read) in LAYOUTS.items():
            files = []
            for k, (tokens, ids) in enumerate(data):
                path = root / f"{name}-{k:05d}{suffix}"
                write(path, tokens, ids)
                files.append(path)
            assert np.array_equal(read(files[0]), data[0][0]), name
            size = sum(
                f.stat().st_size
                + (f.with_suffix(".ids.json").stat().st_size if f.suffix == ".npy" else 0)
                for f in files
            )
            cold, warm, opens, rand = [], [], [], []
            for _ in range(args.repeats):
                drop_cache(files)
                opened, rate, _ = full_pass(files, read)
                cold.append(rate)
                opens.append(opened)
                warm.append(full_pass(files, read)[1])
                rand.append(random_batches(files, read, args.batch, args.batches))
            grown = open_cost_mb(name, files)
            row = {
                "layout": name,
                "n": args.n,
                "shard": args.shard,
                "bytes_per_galaxy": round(size / args.n, 1),
                "anon_mb_on_open": round(grown, 1),
                "data_mb": round(args.n * T * 2 / 2**20, 1),
                "open_s": [round(min(opens), 4), round(max(opens), 4)],
                "seq_cold_gal_s": [
                    round(min(cold)),
                    round(statistics.median(cold)),
                    round(max(cold)),
                ],
                "seq_warm_gal_s": [
                    round(min(warm)),
                    round(statistics.median(warm)),
                    round(max(warm)),
                ],
                "rand_batch_s": [
                    round(min(rand)),
                    round(statistics.median(rand)),
                    round(max(rand)),
                ],
            }
            print(json.dumps(row), flush=True)
            results.append(row)
            for f in files:
                f.unlink()
    print(
        f"\n{'layout':<15}{'B/gal':>8}{'anon MB':>8}{'open s':>10}{'seq cold gal/s':>18}{'seq warm gal/s':>18}"
        f"{'rand batch/s':>15}"
    )
    for r in results:
        print(
            f"{r['layout']:<15}{r['bytes_per_galaxy']:>8}{r['anon_mb_on_open']:>8}{r['open_s'][1]:>10}"
            f"{r['seq_cold_gal_s'][1]:>18,}{r['seq_warm_gal_s'][1]:>18,}{r['rand_batch_s'][1]:>15,}"
        )
    print("(medians of --repeats; the JSON lines give min, median, max)")


if __name__ == "__main__":
    main()
