"""Exact vs approximate (HNSW) similarity search over a catalogue-sized set of embeddings.

    PYTHONPATH=. python benchmarks/bench_search.py --n 100000 --dim 128 --queries 200

Clustered Gaussian vectors stand in for embeddings. Reports the index build time, the time
per query (one at a time, as POST /search asks) and HNSW's recall@10 against the exact index.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from astropt.science.search import SimilarityIndex


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, args.dim)) * 2
    x = (centres[rng.integers(0, 200, args.n)] + rng.normal(size=(args.n, args.dim))).astype(
        np.float32
    )
    ids = np.array([f"gal-{i}" for i in range(args.n)])
    queries = rng.choice(args.n, args.queries, replace=False)
    found = {}
    for kind, threshold in (("exact", args.n), ("hnsw", 0)):
        started = time.perf_counter()
        index = SimilarityIndex(ids, x, exact_up_to=threshold)
        built = time.perf_counter() - started
        started = time.perf_counter()
        found[kind] = [{h.object_id for h in index.query_id(ids[q], args.k)} for q in queries]
        per_query = (time.perf_counter() - started) / args.queries
        print(
            f"{kind:5s} n={args.n} dim={args.dim}: build {built:.1f} s, {per_query * 1e3:.2f} ms per query"
        )
    recall = np.mean(
        [len(a & b) / args.k for a, b in zip(found["hnsw"], found["exact"], strict=True)]
    )
    print(f"hnsw recall@{args.k} against exact: {recall:.3f}")


if __name__ == "__main__":
    main()
