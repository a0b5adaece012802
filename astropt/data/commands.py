"""``astropt data ...`` commands, added to the main CLI by :func:`register`."""

from __future__ import annotations

import argparse
import json
import sys

from astropt.data.mock import read_manifest, write_mock_dataset


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="make or inspect galaxy-image data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    synth = data_sub.add_parser(
        "synth",
        help="write a GalSim mock data set (Parquet, Hugging Face schema)",
        description="Simulate N Legacy-Survey-like galaxies (g, r, i, z; 160x160 px) and "
        "write them as Parquet shards plus manifest.json into DIR. An existing data set "
        "with the same N and seed is reused.",
    )
    synth.add_argument("--n", type=int, required=True, help="number of galaxies")
    synth.add_argument("--out", required=True, metavar="DIR", help="output directory")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--shard-size", type=int, default=256, help="galaxies per Parquet file")
    synth.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    synth.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    if args.n < 1 or args.shard_size < 1:
        print("error: --n and --shard-size must be at least 1", file=sys.stderr)
        return 2
    try:
        out = write_mock_dataset(
            args.out, args.n, args.seed, shard_size=args.shard_size, progress=not args.no_progress
        )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    manifest = read_manifest(out) or {}
    summary = {
        "out": str(out),
        "n": manifest.get("n"),
        "seed": manifest.get("seed"),
        "files": manifest.get("files"),
        "bytes_per_galaxy": round(manifest.get("bytes_per_galaxy", 0)),
        "seconds_per_galaxy": round(manifest.get("seconds_per_galaxy", 0), 4),
    }
    print(json.dumps(summary, indent=2))
    return 0
