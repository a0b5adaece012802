"""``astropt train``: run the training loop from a YAML config with a progress bar."""

from __future__ import annotations

import argparse
from typing import Any

from tqdm.auto import tqdm

from astropt.config import TrainConfig
from astropt.training import TrainCallback, train

EXAMPLE_CONFIG = "astropt/configs/mock-small.yaml"


class ProgressBar(TrainCallback):
    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.last: dict[str, float] = {}

    def on_start(self, info: dict[str, Any]) -> None:
        codec = info["codec"]
        trained = "" if codec["trained"] else " [UNTRAINED codec]"
        tqdm.write(
            f"device {info['device']} ({info['dtype']}), {info['n_params'] / 1e6:.2f} M parameters, "
            f"codec {codec['spec']} ({codec['fingerprint']}){trained}"
        )
        if "unigram_entropy" in info:
            tqdm.write(
                f"{info['n_train']} train / {info['n_val']} val images; unigram cross-entropy of "
                f"the training tokens: {info['unigram_entropy']:.3f} nats"
            )
        if info["resumed"]:
            tqdm.write(f"resuming from step {info['start_iter']}")
        self.bar = tqdm(
            total=info["max_iters"], initial=info["start_iter"], unit="it", dynamic_ncols=True
        )

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        assert self.bar is not None
        self.bar.update(step - self.bar.n)
        self.last.update(loss=metrics["train_loss"], tok_s=metrics["tokens_per_s"])
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in self.last.items()})

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self.last["val"] = metrics["val_loss"]
        tqdm.write(f"step {step}: train {metrics['train_loss']:.4f}, val {metrics['val_loss']:.4f}")


def run(args: argparse.Namespace) -> int:
    overrides = list(args.set or [])
    if args.out:
        overrides.append(f"out_dir={args.out}")
    if args.config:
        config = TrainConfig.from_yaml(args.config, overrides)
    else:
        config = TrainConfig.from_dict({}, overrides)
    bar = ProgressBar()
    result = train(config, [bar], resume=not args.fresh)
    if bar.bar is not None:
        bar.bar.close()
    best = f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "n/a"
    print(
        f"{result.status} at step {result.step}; best val loss {best}; outputs in {result.out_dir}"
    )
    if result.reason:
        print(result.reason)
    return 1 if result.status == "diverged" else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train AstroPT on AION tokens",
        description=f"Train from a YAML config (see {EXAMPLE_CONFIG}); without one, the defaults "
        "train a small model on the embedded mock data.",
    )
    p.add_argument("--config", "-c", help="YAML file with a TrainConfig")
    p.add_argument(
        "--set",
        "-s",
        action="append",
        metavar="KEY=VALUE",
        help="override a field, e.g. --set optim.learning_rate=1e-3 (repeatable)",
    )
    p.add_argument("--out", help="run directory (same as --set out_dir=...)")
    p.add_argument(
        "--fresh", action="store_true", help="ignore an existing checkpoint in the run directory"
    )
    p.set_defaults(func=run)
