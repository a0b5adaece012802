"""Draw docs/img/token-datasets.png: bytes a galaxy, and read speed per layout.

    .venv/bin/python scripts/draw_token_figure.py

The numbers are the measurements in docs/data.md (``benchmarks/bench_token_layouts.py --n 65536
--shard 8192 --repeats 3`` and ``benchmarks/bench_tokenise.py``, a shared 2-core machine); rerun
those and update LAYOUTS when they change.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "token-datasets.png"
FLUX_BYTES = 4 * 152 * 152 * 4  # a float32 4-band Legacy Survey cut-out
# layout: (bytes a galaxy, sequential warm reads in galaxies/s)
LAYOUTS = {
    "Arrow IPC\nmmap\n(chosen)": (1169, 391_000),
    "Arrow IPC\n+ LZ4": (520, 330_000),
    "Parquet\nzstd": (391, 26_000),
    "Parquet": (2326, 65_000),
    ".npy\nmmap": (1169, 512_000),
}


def main() -> None:
    fig, (size, speed) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    names = ["flux\ncut-out", *LAYOUTS]
    sizes = [FLUX_BYTES, *(b for b, _ in LAYOUTS.values())]
    bars = size.bar(range(len(names)), sizes, color=["#b0b0b0"] + ["#36507a"] * len(LAYOUTS))
    size.set_yscale("log")
    size.set_xticks(range(len(names)), names, fontsize=7)
    size.set_ylabel("bytes a galaxy (log)")
    size.set_title("On disk: 576 int16 tokens instead of 4 x 152 x 152 floats", fontsize=9)
    for bar, value in zip(bars, sizes, strict=True):
        size.text(
            bar.get_x() + bar.get_width() / 2, value * 1.15, f"{value:,}", ha="center", fontsize=7
        )
    rates = [r for _, r in LAYOUTS.values()]
    bars = speed.bar(range(len(LAYOUTS)), rates, color="#36507a")
    speed.set_xticks(range(len(LAYOUTS)), list(LAYOUTS), fontsize=7)
    speed.set_ylabel("galaxies/s, sequential warm read")
    speed.set_title("Reading 65,536 tokenised galaxies (one training step reads ~32)", fontsize=9)
    for bar, value in zip(bars, rates, strict=True):
        speed.text(
            bar.get_x() + bar.get_width() / 2,
            value * 1.02,
            f"{value / 1000:.0f}k",
            ha="center",
            fontsize=7,
        )
    fig.tight_layout()
    fig.savefig(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
