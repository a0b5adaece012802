"""Train the small config for a fixed wall-clock budget on CPU and report the figures.

    python benchmarks/train_cpu_5min.py [--minutes 5] [--codec shipped] [--out runs/bench-5min]

Reports the first and last validation loss and the unigram-frequency cross-entropy of
the training tokens (the loss of a model that ignores context). Not a test: timings
depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from astropt.config import TrainConfig
from astropt.training import TrainCallback, train

CONFIG = Path(__file__).resolve().parents[1] / "astropt" / "configs" / "mock-small.yaml"


class Budget(TrainCallback):
    def __init__(self, seconds: float):
        self.seconds, self.t0 = seconds, None
        self.info, self.evals, self.tokens_per_s = {}, [], []

    def on_start(self, info):
        self.info, self.t0 = info, time.perf_counter()

    def on_log(self, step, metrics):
        self.tokens_per_s.append(metrics["tokens_per_s"])

    def on_eval(self, step, metrics):
        self.evals.append((step, metrics["val_loss"], time.perf_counter() - self.t0))
        print(
            f"step {step:4d}  t={self.evals[-1][2]:6.0f}s  val {metrics['val_loss']:.4f}",
            flush=True,
        )

    def should_stop(self):
        return self.t0 is not None and time.perf_counter() - self.t0 > self.seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--codec", default="shipped")
    ap.add_argument("--out", default="runs/bench-5min")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    overrides = [f"codec={args.codec}", f"out_dir={args.out}", "eval_interval=20", *args.set]
    config = TrainConfig.from_yaml(CONFIG, overrides)
    budget = Budget(args.minutes * 60)
    result = train(config, [budget], resume=False)
    first, last = budget.evals[0], budget.evals[-1]
    report = {
        "codec": budget.info["codec"],
        "steps": result.step,
        "wall_s": round(last[2], 1),
        "images_seen": result.step * config.batch_size * config.grad_accum,
        "median_tokens_per_s": sorted(budget.tokens_per_s)[len(budget.tokens_per_s) // 2],
        "first_val_loss": {"step": first[0], "value": round(first[1], 4)},
        "last_val_loss": {"step": last[0], "value": round(last[1], 4)},
        "unigram_cross_entropy": round(budget.info["unigram_entropy"], 4),
        "below_unigram": last[1] < budget.info["unigram_entropy"],
    }
    print(json.dumps(report, indent=2))
    Path(args.out, "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
