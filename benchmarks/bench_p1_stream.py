"""P1-stream of #24: training on a streamed source, write-through against tokenising every batch.

    PYTHONPATH=. python benchmarks/bench_p1_stream.py --n 64 --epochs 3 --repeats 1

Writes ``n`` galaxies in the seed data set's schema (``legacysurvey_image``: 4 x 152 x 152 flux,
ivar, mask) to a local directory and trains on it streamed (``data.source: hf``, ``streaming:
true``, as the hub data set is read) with a 4-layer, 128-wide model, batch 8, for ``epochs``
passes over the training split, one process, in one run of this script:

- ``write-through``: ``data.cache_tokens: true`` (the default): the stream is tokenised once into
  a token data set (DataLoader workers, batched codec), every epoch reads the tokens;
- ``per-batch``: ``data.cache_tokens: false``: every batch of every epoch is tokenised in the
  main process, as the upstream script does.

The codec is AION-base's architecture with random weights (``--codec small``: the shipped size).
Reports wall seconds of each ``train()`` (tokenising included) and trained tokens per second.
``--parts`` first times the two halves of a per-batch step in this process (one codec call on a
batch of 8 crops, one forward, backward and optimiser step of the model): their ratio bounds
what tokenising once can save.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

AION_BASE_SHAPE = {"hidden_dims": 512, "num_consecutive": 4}  # as benchmarks/bench_gpu_lane.py


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--codec", choices=["aion-base", "small"], default="aion-base")
    ap.add_argument("--parts", action="store_true", help="time one codec batch and one step first")
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    from astropt.codec import random_codec, save_codec
    from astropt.config import TrainConfig
    from astropt.data import split_of
    from astropt.training import train
    from tests.astropt.seed_schema import IMAGE_COLUMN, write_seed_parquet

    datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN = 0
    with tempfile.TemporaryDirectory(prefix="bench-p1-") as tmp:
        root = Path(tmp)
        write_seed_parquet(root / "data" / "train-00000.parquet", args.n)
        codec_dir = save_codec(
            random_codec(0, **(AION_BASE_SHAPE if args.codec == "aion-base" else {})),
            root / "codec",
        )
        if args.parts:
            time_parts(codec_dir)
        n_train = sum(split_of(f"mock-s0-{i:08d}", 0.05) == "train" for i in range(args.n))
        steps = math.ceil(args.epochs * n_train / 8)
        results = []
        for r in range(args.repeats):
            for label, cache in (("write-through", True), ("per-batch", False)):
                os.environ["ASTROPT_DATA_DIR"] = str(
                    root / f"cache-{label}-{r}"
                )  # a cold token cache
                config = TrainConfig.model_validate(
                    {
                        "out_dir": str(root / f"run-{label}-{r}"),
                        "codec": str(codec_dir),
                        "model": {"n_layer": 4, "n_head": 4, "n_embd": 128},
                        "data": {
                            "source": "hf",
                            "hf_dataset": str(root / "data"),
                            "streaming": True,
                            "image_column": IMAGE_COLUMN,
                            "val_fraction": 0.05,
                            "shuffle_buffer": 64,
                            "cache_tokens": cache,
                        },
                        "batch_size": 8,
                        "max_iters": steps,
                        "eval_interval": steps,
                        "eval_iters": 1,
                        "log_interval": 1,
                        "n_val_images": 0,
                        "num_threads": 0,
                        "seed": 1,
                    }
                )
                started = time.perf_counter()
                result = train(config)
                seconds = time.perf_counter() - started
                row = {
                    "mode": label,
                    "repeat": r,
                    "steps": result.step,
                    "seconds": round(seconds, 1),
                    "tokens_per_s": round(steps * 8 * 575 / seconds, 1),
                    "codec": args.codec,
                    "n": args.n,
                }
                print(json.dumps(row), flush=True)
                results.append(row)
        for r in range(args.repeats):
            pair = {x["mode"]: x["tokens_per_s"] for x in results if x["repeat"] == r}
            print(
                f"repeat {r}: write-through / per-batch = {pair['write-through'] / pair['per-batch']:.2f}x"
            )


def time_parts(codec_dir: Path, repeats: int = 3) -> None:
    """Seconds of one codec call and of one training step, each on a batch of 8."""
    import torch

    from astropt.codec import load_codec
    from astropt.config import TrainConfig
    from astropt.model import GPT
    from astropt.sequences import gpt_config, training_pair

    codec = load_codec(str(codec_dir))
    crops = torch.rand(8, 4, 96, 96) * 0.1
    tokens = codec.encode(crops)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        tokens = codec.encode(crops)
    codec_s = (time.perf_counter() - started) / repeats
    config = TrainConfig.model_validate(
        {"out_dir": "unused", "model": {"n_layer": 4, "n_head": 4, "n_embd": 128}, "batch_size": 8}
    )
    net = GPT(gpt_config(config))
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def step(index: int) -> None:
        inputs, targets, masks = training_pair(tokens.long(), config.model, index, 0)
        _, loss = net(inputs, targets, masks)
        assert loss is not None
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)

    step(0)  # warm-up
    started = time.perf_counter()
    for i in range(repeats):
        step(i + 1)
    step_s = (time.perf_counter() - started) / repeats
    print(
        json.dumps(
            {
                "threads": torch.get_num_threads(),
                "codec_batch8_s": round(codec_s, 3),
                "model_step_batch8_s": round(step_s, 3),
                "codec_over_step": round(codec_s / step_s, 2),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
