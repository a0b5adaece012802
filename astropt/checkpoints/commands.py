"""CLI commands for checkpoints: ``astropt import-upstream CKPT.pt OUTDIR``."""

from __future__ import annotations

import argparse
import sys
import warnings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-upstream",
        help="convert an upstream AstroPT train_aion.py checkpoint (trusted files only)",
        description=(
            "Convert a checkpoint written by upstream AstroPT's scripts/train_aion.py into an "
            "astropt checkpoint directory (safetensors + JSON). The input is unpickled: only "
            "convert files from a source you trust."
        ),
    )
    parser.add_argument(
        "ckpt", help="upstream checkpoint file (ckpt.pt), or with --hub its path in the repo"
    )
    parser.add_argument(
        "--hub",
        metavar="REPO_ID",
        help="take ckpt from this Hugging Face repo "
        "(e.g. Smith42/astroPT_v2.0; honours HF_TOKEN, the cache and HF_HUB_OFFLINE)",
    )
    parser.add_argument("--revision", help="hub revision (branch, tag or commit)")
    parser.add_argument("out_dir", help="checkpoint directory to write")
    parser.set_defaults(func=run_import_upstream)


def run_import_upstream(args: argparse.Namespace) -> int:
    from astropt.checkpoints import CheckpointError
    from astropt.checkpoints.upstream import (
        UNPICKLE_WARNING,
        UpstreamUnpickleWarning,
        import_upstream,
    )

    try:
        ckpt = args.ckpt
        if getattr(args, "hub", None):
            from astropt.checkpoints.hub import download_upstream

            ckpt = download_upstream(args.hub, args.ckpt, revision=args.revision)
        print(f"warning: {UNPICKLE_WARNING.format(path=ckpt)}", file=sys.stderr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UpstreamUnpickleWarning)  # printed above already
            out = import_upstream(ckpt, args.out_dir)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
