"""Image memory a queued inference request holds, full upload vs its central crop.

    PYTHONPATH=. python benchmarks/bench_queued_memory.py --side 2048 --requests 64

Parses one ``.npy`` upload of ``side`` x ``side`` pixels (4 bands) the way the API does, and
reports the bytes that ``requests`` queued requests would hold with and without keeping only
the 96x96 crop, with the peak traced allocation of parsing one upload (tracemalloc).
"""

from __future__ import annotations

import argparse
import io
import tracemalloc

import numpy as np

from astropt.inference.uploads import UploadLimits, parse_upload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--requests", type=int, default=64)
    args = parser.parse_args()
    flux = np.random.default_rng(0).gamma(1.0, 0.3, (4, args.side, args.side)).astype(np.float32)
    buffer = io.BytesIO()
    np.save(buffer, flux)
    data = buffer.getvalue()
    limits = UploadLimits(
        max_upload_bytes=len(data) + 1,
        max_decompressed_bytes=len(data) * 2,
        max_side=max(args.side, 96),
    )
    tracemalloc.start()
    cube = parse_upload(data, "g.npy", None, limits)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    crop = cube.central_crop()
    mib = 2**20
    print(f"upload {len(data) / mib:.1f} MiB, parse peak {peak / mib:.1f} MiB")
    print(
        f"per queued request: full {cube.flux.nbytes / mib:.2f} MiB, crop {crop.flux.nbytes / mib:.3f} MiB"
    )
    print(
        f"{args.requests} queued: full {args.requests * cube.flux.nbytes / mib:.1f} MiB, "
        f"crop {args.requests * crop.flux.nbytes / mib:.1f} MiB"
    )


if __name__ == "__main__":
    main()
