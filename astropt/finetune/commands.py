"""``astropt finetune``: a task head on a checkpoint, from the command line."""

from __future__ import annotations

import argparse
from typing import Any, get_args

from astropt.config import apply_override
from astropt.pooling import HeadPool
from astropt.training import TrainCallback


class Printer(TrainCallback):
    def on_start(self, info: dict[str, Any]) -> None:
        print(
            f"device {info['device']}: {info['n_trainable']:,} of {info['n_params']:,} parameters train; "
            f"{info['n_train']} train / {info['n_val']} val / {info['n_test']} test objects"
        )

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        print(f"step {step}: train {metrics['train_loss']:.4f}, val {metrics['val_loss']:.4f}")


def run(args: argparse.Namespace) -> int:
    from astropt.finetune import FinetuneConfig, finetune

    raw: dict[str, Any] = {
        "init": args.init,
        "labels": [x.strip() for x in args.labels.split(",") if x.strip()],
        "task": args.task,
        "mode": args.mode,
        "steps": args.steps,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "head_hidden": args.head_hidden,
        "pooling": args.pooling,
        "lora": {"r": args.lora_r, "alpha": args.lora_alpha, "dropout": args.lora_dropout},
        "device": args.device,
        "seed": args.seed,
        "out_dir": args.out,
        "label_table": args.label_table,
        "data": {"source": "tokens", "path": args.tokens}
        if args.tokens
        else {"source": "local", "path": args.data}
        if args.data
        else {"source": "mock", "n_mock": args.n_mock, "mock_seed": args.mock_seed},
    }
    for item in args.set or []:
        apply_override(raw, item)
    result = finetune(FinetuneConfig.model_validate(raw), [Printer()], resume=not args.fresh)
    if result.metrics is None:
        print(f"stopped at step {result.step}; checkpoints/last in {result.out_dir}")
        return 1
    print(table(result.metrics))
    print(
        f"best val loss {result.best_val_loss:.4f} at step {result.metrics['best_step']}; "
        f"outputs in {result.out_dir} (finetune_metrics.json, finetune_test.png, checkpoints/best)"
    )
    return 0


def table(metrics: dict[str, Any]) -> str:
    """Test-split scores per label: fine-tune vs ridge probe vs constant."""
    lines = [f"{'test split':<20}{'finetune':>12}{'probe':>12}{'constant':>12}"]
    for label in metrics["labels"]:
        cells = []
        for method in ("finetune", "probe", "constant"):
            score = metrics[method]["test"][label]
            cells.append(
                f"R2 {score['r2']:.3f}" if "r2" in score else f"acc {score['accuracy']:.3f}"
            )
        lines.append(f"{label:<20}" + "".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a checkpoint with a task head (full, LoRA or head only)",
        description="Train a regression/classification head on pooled hidden states of a checkpoint, "
        "score it on held-out objects against a ridge probe and a constant, and write "
        "checkpoints/best (a plain AstroPT checkpoint + head.safetensors) and finetune_metrics.json.",
    )
    p.add_argument("--init", required=True, help="checkpoint directory, or 'shipped'")
    p.add_argument("--labels", required=True, help="comma-separated label columns, e.g. mag_r,g_r")
    p.add_argument("--label-table", help="CSV/Parquet with object_id and the label columns")
    p.add_argument("--task", choices=["regression", "classification"], default="regression")
    p.add_argument("--mode", choices=["full", "lora", "head"], default="lora")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=float, default=16.0)
    p.add_argument("--lora-dropout", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--head-hidden", type=int, default=64, help="MLP head width; 0: linear")
    p.add_argument("--pooling", choices=get_args(HeadPool), default="mean")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--data", help="local data directory (FITS/.npy/Parquet); default: the mock"
    )
    source.add_argument(
        "--tokens",
        help="a token data set (astropt tokenise): its tokens are read as they are (no codec "
        "runs) and its columns are the labels unless --label-table is given",
    )
    p.add_argument("--n-mock", type=int, default=512)
    p.add_argument("--mock-seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument(
        "--set",
        "-s",
        action="append",
        metavar="KEY=VALUE",
        help="any other FinetuneConfig field, e.g. --set test_fraction=0.25",
    )
    p.add_argument(
        "--out",
        required=True,
        help="run directory (a run there is continued from checkpoints/last)",
    )
    p.add_argument(
        "--fresh", action="store_true", help="ignore an existing checkpoints/last in --out"
    )
    p.set_defaults(func=run)
