"""Rows per second of a streamed Hugging Face data set, as training and embedding jobs read it.

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/bench_stream_rows.py --n 40

Writes ``n`` mock galaxies in the seed data set's schema (``legacysurvey_image`` struct of 4 x
152 x 152 flux, ivar and mask) to a local directory and streams it with ``datasets``
(``streaming=True``, as a hub data set is read), timing:

- ``training``: the training loop's streamed split (``open_split``), parsed samples;
- ``embedding``: the embedding job's reader (``StreamedRows``), parsed samples;
- ``rename_column``: the same stream with ``IterableDataset.rename_column`` of the image
  column, the way both paths read it before (kept to show why they no longer do).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path


def rate(rows: Iterable, n: int) -> float:
    started = time.perf_counter()
    count = 0
    for _ in rows:
        count += 1
        if count == n:
            break
    return count / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=40, help="galaxies written and streamed")
    args = ap.parse_args()

    import datasets
    from datasets import load_dataset

    from astropt.config import DataSettings
    from astropt.data.samples import raw_sample_from_row
    from astropt.data.sources import open_split
    from astropt.science.sources import SourceSpec
    from astropt.science.stream_embed import StreamedRows
    from tests.astropt.seed_schema import IMAGE_COLUMN, write_seed_parquet

    datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN = 0
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "data"
        write_seed_parquet(directory / "train-00000.parquet", args.n)
        cfg = DataSettings(
            source="hf",
            hf_dataset=str(directory),
            streaming=True,
            image_column=IMAGE_COLUMN,
            val_fraction=0.05,
            shuffle_buffer=1,
        )
        n_train = round(args.n * 0.9)  # about 5 % of the ids fall in the validation split
        training = rate(open_split(cfg, "train"), n_train)
        embedding = rate(
            (
                r
                for r in StreamedRows(
                    SourceSpec("hf", path=str(directory), image_column=IMAGE_COLUMN, limit=args.n)
                ).rows(0)
            ),
            args.n,
        )
        stream = load_dataset(str(directory), split="train", streaming=True)
        renamed = stream.select_columns([IMAGE_COLUMN, "object_id"]).rename_column(
            IMAGE_COLUMN, "image"
        )
        bands = cfg.bands
        old = rate(
            (raw_sample_from_row(r, bands, "bench") for r in renamed.with_format("numpy")),
            min(args.n, 10),
        )
    print(f"{'path':<16}{'rows/s':>10}{'s/row':>10}")
    for name, value in (("training", training), ("embedding", embedding), ("rename_column", old)):
        print(f"{name:<16}{value:>10.2f}{1 / value:>10.3f}")


if __name__ == "__main__":
    main()
