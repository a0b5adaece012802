"""``astropt tokenise``: make a token data set from a YAML config or flags; check or finalise one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from astropt.config import apply_override


def _config(args: argparse.Namespace) -> Any:
    from astropt.tokens.make import TokeniseConfig

    raw: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
    data = raw.setdefault("data", {})
    for flag, key in (
        ("source", "source"),
        ("path", "path"),
        ("n_mock", "n_mock"),
        ("mock_seed", "mock_seed"),
        ("hf_dataset", "hf_dataset"),
        ("hf_split", "hf_split"),
        ("image_column", "image_column"),
    ):
        if getattr(args, flag) is not None:
            data[key] = getattr(args, flag)
    for flag in (
        "codec",
        "shard_size",
        "batch_size",
        "num_workers",
        "device",
        "limit",
        "rank",
        "world_size",
        "job_id",
    ):
        if getattr(args, flag) is not None:
            raw[flag] = getattr(args, flag)
    if args.out:
        raw["out_dir"] = args.out
    if args.columns is not None:
        raw["columns"] = [c for c in args.columns.split(",") if c]
    for item in args.set or []:
        apply_override(raw, item)
    return TokeniseConfig.model_validate(raw)


def run(args: argparse.Namespace) -> int:
    from astropt.tokens import finalize_manifest, open_token_dataset, tokenise

    if args.check:
        ds = open_token_dataset(args.check)
        m = ds.manifest
        print(
            json.dumps(
                {
                    "path": str(ds.path),
                    "n_galaxies": m["n_galaxies"],
                    "n_shards": m["n_shards"],
                    "bytes": m["bytes"],
                    "bytes_per_galaxy": round(m["bytes"] / max(1, m["n_galaxies"]), 1),
                    "codec": m["codec"],
                    "source": m["source"],
                    "columns": m["columns"],
                    "job_id": m.get("job_id"),
                    "verified": "sha256",
                },
                indent=2,
            )
        )
        return 0
    if args.finalize:
        manifest = finalize_manifest(args.finalize)
        if manifest is None:
            print(f"error: {args.finalize}: not every rank has finished", flush=True)
            return 1
        print(
            f"{args.finalize}: {manifest['n_galaxies']} galaxies in {manifest['n_shards']} shards"
        )
        return 0
    config = _config(args)
    result = tokenise(config, progress=not args.no_progress)
    print(
        json.dumps(
            {
                "out_dir": result.out_dir,
                "n_galaxies": result.n_galaxies,
                "n_shards": result.n_shards,
                "bytes_on_disk": result.bytes_on_disk,
                "seconds": round(result.seconds, 2),
                "galaxies_per_s": round(result.galaxies_per_s, 2),
                "complete": result.complete,
            },
            indent=2,
        )
    )
    if not result.complete:
        print(
            "this rank is done; the manifest is written when every rank has finished "
            f"(or run: astropt tokenise --finalize {result.out_dir})"
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tokenise",
        help="tokenise a data set once into a token data set (sharded, resumable)",
        description="Encode every galaxy of a source with the codec into int16 token shards plus a manifest "
        "(docs/data.md, 'Token data sets'). A rerun resumes after the last complete shard. Several "
        "processes split the source with --rank/--world-size; the last to finish writes the manifest.",
    )
    p.add_argument(
        "--config", "-c", help="YAML file with a TokeniseConfig (data, codec, out_dir, ...)"
    )
    p.add_argument("--out", help="the token data set directory (out_dir)")
    p.add_argument("--source", choices=["mock", "local", "hf"], help="data.source")
    p.add_argument("--path", help="data.path (local files, or the mock's directory)")
    p.add_argument("--n-mock", type=int, help="data.n_mock")
    p.add_argument("--mock-seed", type=int, help="data.mock_seed")
    p.add_argument("--hf-dataset", help="data.hf_dataset: a hub id or a local directory (streamed)")
    p.add_argument("--hf-split", help="data.hf_split")
    p.add_argument("--image-column", help="data.image_column")
    p.add_argument("--codec", help="codec spec (default: shipped)")
    p.add_argument("--shard-size", type=int, help="galaxies per shard (default 4096)")
    p.add_argument("--batch-size", type=int, help="galaxies per codec call (default 32)")
    p.add_argument("--num-workers", type=int, help="DataLoader processes decoding rows (default 2)")
    p.add_argument("--device", help="codec device: auto, cpu, cuda, cuda:N")
    p.add_argument("--limit", type=int, help="stop after this many galaxies")
    p.add_argument(
        "--columns", help="comma-separated scalar columns to carry along (e.g. mag_r,g_r)"
    )
    p.add_argument("--rank", type=int, help="this process's part (0-based)")
    p.add_argument("--world-size", type=int, help="parts the source is split into")
    p.add_argument("--job-id", help="recorded in the manifest")
    p.add_argument(
        "--set", "-s", action="append", metavar="KEY=VALUE", help="override a field (repeatable)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--check", metavar="DIR", help="verify a token data set (sizes and sha256) and summarise it"
    )
    p.add_argument(
        "--finalize", metavar="DIR", help="write the manifest once every rank has finished"
    )
    p.set_defaults(func=run)
