"""``astropt codec train`` and ``astropt codec evaluate`` (registered by ``astropt.cli``)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from typing import Any

_TRAIN_HELP = {
    "steps": "optimiser steps",
    "batch_size": "galaxies per step",
    "lr": "peak AdamW learning rate (linear warm-up, cosine decay)",
    "warmup": "warm-up steps",
    "min_lr_fraction": "final learning rate as a fraction of --lr",
    "weight_decay": "AdamW weight decay",
    "grad_clip": "gradient-norm clip",
    "pool_size": "training galaxies drawn with GalSim (cached in OUT/pool)",
    "val_size": "held-out galaxies validated on during training",
    "seed": "seed of the pool, the batches, the noise and the init",
    "hidden_dims": "codec width (AION ImageCodec hidden_dims)",
    "num_consecutive": "residual blocks per stage (AION ImageCodec num_consecutive)",
    "range_compression": (
        "arcsinh scale of AION's range compression, in nanomaggies (AION's default 0.01 is ~1.7 "
        "DR10 r-band sky sigma; brighter pixels are log-compressed)"
    ),
    "relative_floor": "relative-error floor of the inverse-variance weights",
    "huber_delta": "residuals beyond this many sigma count linearly (0: plain chi^2)",
    "latent_penalty": "weight of the penalty keeping pre-quantisation values in range",
    "flux_weight": "weight of the chi^2 of each band's crop flux (1: a uniform offset counts as in the pixel loss)",
    "flux_floor": "relative-error floor of the crop-flux chi^2",
    "ema_decay": "export a moving average of the weights with this decay per step (0: off)",
    "log_every": "steps between log lines (OUT/log.jsonl)",
    "eval_every": "steps between validations",
    "checkpoint_every": "steps between checkpoints (OUT/checkpoints/last)",
    "max_minutes": "stop (with a checkpoint and export) after this much training time",
    "threads": "torch CPU threads",
    "init_from": (
        "start from this codec's weights (a spec: shipped, a directory) instead of a fresh init; "
        "with a larger --hidden-dims the codec is grown (Net2Net widening) into the wider one"
    ),
    "device": "torch device: auto (CUDA when available, else CPU), cpu, cuda, cuda:1 ...",
}


def _add_train(sub: Any) -> None:
    from astropt.codec_training.trainer import CodecTrainConfig

    p = sub.add_parser(
        "train",
        help="train the small AION-architecture codec on a GalSim mix (resumable)",
        description="Train a denoising AION ImageCodec on mock galaxies; resumes from "
        "OUT/checkpoints/last; the result is written to OUT/codec (AION layout).",
    )
    p.add_argument("--out", required=True, help="run directory (pool, log, checkpoints, codec)")
    defaults = CodecTrainConfig(out="")
    for f in fields(CodecTrainConfig):
        if f.name in _TRAIN_HELP:
            kind = {"max_minutes": float, "init_from": str}.get(
                f.name, type(getattr(defaults, f.name))
            )
            p.add_argument(
                f"--{f.name.replace('_', '-')}",
                type=kind,
                default=getattr(defaults, f.name),
                help=f"{_TRAIN_HELP[f.name]} (default: %(default)s)",
            )
    p.add_argument(
        "--ship",
        action="store_true",
        help="also write the result into the package (astropt/shipped_codec)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from astropt.codec_training.trainer import CodecTrainConfig, train_codec

    values = {
        f.name: getattr(args, f.name) for f in fields(CodecTrainConfig) if hasattr(args, f.name)
    }
    try:
        cfg = CodecTrainConfig(**values)
        _check_train_config(cfg)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    target = train_codec(cfg, progress=not args.no_progress)
    print(f"codec written to {target} (load it with codec spec {target})")
    return 0


def _check_train_config(cfg: Any) -> None:
    positive = (
        "steps",
        "batch_size",
        "pool_size",
        "val_size",
        "log_every",
        "eval_every",
        "checkpoint_every",
        "threads",
        "hidden_dims",
        "num_consecutive",
    )
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.hidden_dims % 4:
        raise ValueError(
            f"--hidden-dims must be divisible by 4 (two 2x compressions), got {cfg.hidden_dims}"
        )
    for name in ("lr", "range_compression"):
        if not getattr(cfg, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {getattr(cfg, name)}")


def _add_evaluate(sub: Any) -> None:
    from astropt.codec_training.evaluate import EVAL_SEED, GENERATORS

    p = sub.add_parser(
        "evaluate",
        help="measure a codec's reconstructions against the truth of held-out mock galaxies",
    )
    p.add_argument("--codec", default="shipped", help="codec spec (default: %(default)s)")
    p.add_argument("--n", type=int, default=200, help="galaxies (default: %(default)s)")
    p.add_argument("--seed", type=int, default=EVAL_SEED, help="mock seed (default: %(default)s)")
    p.add_argument(
        "--generator",
        choices=GENERATORS,
        default="mock",
        help="mock: the project's mock galaxies; crosscheck: an independent generator (Spergel "
        "profiles, Gaussian/Moffat-2 PSFs) the codec never trained on (default: %(default)s)",
    )
    p.add_argument("--json", dest="json_path", help="also write the figures to this JSON file")
    p.add_argument("--png", help="write a grid of input / reconstruction / truth / residual")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)"
    )
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from astropt.codec import CodecError
    from astropt.codec_training.evaluate import evaluate_codec, format_table, write_grid

    if args.n < 1:
        print(f"error: --n must be >= 1, got {args.n}", file=sys.stderr)
        return 2
    try:
        report = evaluate_codec(
            args.codec,
            n=args.n,
            seed=args.seed,
            threads=args.threads,
            json_path=args.json_path,
            generator=args.generator,
        )
    except CodecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    if args.png:
        write_grid(args.codec, args.png, seed=args.seed, generator=args.generator)
        print(f"grid written to {args.png}")
    return 0 if report["passes_bar"] else 1


def register(subparsers: Any) -> None:
    """Add ``codec train`` / ``codec evaluate`` to the main ``astropt`` parser."""
    codec = subparsers.add_parser("codec", help="train or evaluate the image codec")
    sub = codec.add_subparsers(dest="codec_command", required=True, metavar="{train,evaluate}")
    _add_train(sub)
    _add_evaluate(sub)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m astropt.codec_training.commands codec train ...``."""
    parser = argparse.ArgumentParser(prog="astropt")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
