"""``astropt embed``, ``astropt probe`` and ``astropt search``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys

from tqdm.auto import tqdm

from astropt.pooling import DEFAULT_CENTRE, DEFAULT_POOL, POOLS
from astropt.science.anomaly import METHODS
from astropt.science.shards import DEFAULT_SHARD_ROWS
from astropt.torch_policy import set_threads

DEFAULT_LABELS = ("mag_r", "g_r", "disk_hlr_arcsec", "disk_q", "bulge_fraction", "psf_fwhm_r")


def add_source_flags(p: argparse.ArgumentParser, *, hf: bool = False) -> None:
    """The data-source and pooling flags :func:`source_and_options` reads (``hf``: also a
    Hugging Face data set, read in order as a stream)."""
    p.add_argument(
        "--data",
        choices=("mock", "local", "hf", "tokens") if hf else ("mock", "local", "tokens"),
        default="mock",
    )
    p.add_argument(
        "--data-path",
        help="local: files or directory; mock: where to cache the mock; tokens: a token data "
        "set (astropt tokenise), read without a codec"
        + ("; hf: the data set (a hub id or a local directory)" if hf else ""),
    )
    p.add_argument(
        "--n",
        type=int,
        help="mock galaxies (default 600); local: read at most N rows"
        + ("; hf: at most N rows (required)" if hf else ""),
    )
    p.add_argument("--seed", type=int, default=777, help="mock seed (training mocks use 0)")
    if hf:
        p.add_argument("--split", default="train", help="hf: the split to read")
        p.add_argument(
            "--no-streaming",
            action="store_true",
            help="hf: download the data set instead of streaming it",
        )
        p.add_argument(
            "--image-column", default="legacysurvey_image", help="local/hf: the image column"
        )
        p.add_argument("--columns", nargs="*", help="hf: scalar columns to keep (default: all)")
    p.add_argument("--pool", choices=POOLS, default=DEFAULT_POOL)
    p.add_argument("--centre", type=int, default=DEFAULT_CENTRE, help="k of the k x k centre pool")
    p.add_argument("--layer", type=int, default=-1, help="block whose output is pooled (-1: last)")
    p.add_argument("--batch-size", type=int, default=16)


def source_and_options(args: argparse.Namespace) -> tuple:
    """The data source and embedding options the ``--data/--n/--seed/--pool/...`` flags name."""
    from astropt.science.embedding import EmbedOptions
    from astropt.science.sources import SourceSpec

    if args.data == "mock":
        source = SourceSpec("mock", n=args.n or 600, seed=args.seed, path=args.data_path)
    elif args.data == "hf":
        if not args.data_path or not args.n:
            raise ValueError(
                "--data hf needs --data-path (a hub id or a directory) and --n (the most rows)"
            )
        source = SourceSpec(
            "hf",
            path=args.data_path,
            hf_split=args.split,
            streaming=not args.no_streaming,
            image_column=args.image_column,
            limit=args.n,
            columns=None if args.columns is None else tuple(args.columns),
        )
    elif args.data == "tokens":
        if not args.data_path:
            raise ValueError("--data tokens needs --data-path (the token data set directory)")
        source = SourceSpec("tokens", path=args.data_path, limit=args.n)
    else:
        source = SourceSpec(
            "local",
            path=args.data_path,
            limit=args.n,
            image_column=getattr(args, "image_column", "legacysurvey_image"),
        )
    return source, EmbedOptions(
        pool=args.pool, layer=args.layer, centre=args.centre, batch_size=args.batch_size
    )


def run_embed(args: argparse.Namespace) -> int:
    from astropt.science.embed import embed_catalogue
    from astropt.science.embedding import load_embed_model
    from astropt.science.shards import work_dir_for

    set_threads(args.threads)
    source, options = source_and_options(args)
    model = load_embed_model(args.model, device=args.device, random_init=args.random_init)
    if args.fresh:
        shutil.rmtree(work_dir_for(args.out), ignore_errors=True)
    bar = tqdm(unit="gal", desc="embedding", disable=args.quiet)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    result = embed_catalogue(
        model, source, args.out, options, progress=progress, shard_rows=args.shard_rows
    )
    bar.close()
    m = result.manifest
    if result.resumed_from:
        print(f"continued after {result.resumed_from} rows embedded by an earlier run")
    print(
        f"{result.count} embeddings ({m['embedding_dim']}-d, {m['pooling']} pool, layer {m['layer']}) in {result.out_dir}"
    )
    return 0


def run_probe(args: argparse.Namespace) -> int:
    from astropt.science.probe import probe_catalogue

    baselines = {}
    for item in args.baseline or []:
        name, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"--baseline takes NAME=CATALOGUE_DIR, got {item!r}")
        baselines[name] = path
    catalogue = args.catalogue
    if args.label_table:
        from astropt.science.catalogue import read_catalogue
        from astropt.science.label_tables import join_labels, read_label_table

        catalogue = join_labels(
            read_catalogue(args.catalogue), read_label_table(args.label_table), args.label_table
        )
    report = probe_catalogue(
        catalogue,
        list(args.labels),
        baselines=baselines,
        aperture=not args.no_aperture,
        folds=args.folds,
        alpha=args.alpha,
        seed=args.seed,
        bootstrap=args.bootstrap,
        shuffled=args.shuffled,
        categorical=list(args.categorical or []),
    )
    print(report.table())
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(report.to_json(indent=2))
    return 0


def run_search(args: argparse.Namespace) -> int:
    from astropt.science.catalogue import read_catalogue
    from astropt.science.search import SimilarityIndex

    catalogue = read_catalogue(args.catalogue)
    index = SimilarityIndex.from_catalogue(catalogue)
    if args.outliers:
        import numpy as np

        from astropt.science.anomaly import catalogue_anomaly_scores

        method, scores = catalogue_anomaly_scores(
            catalogue, args.method, knn=lambda: index.outlier_scores(10)
        )
        order = np.argsort(-scores, kind="stable")[: args.k]
        rows = [
            {
                "object_id": str(index.object_ids[i]),
                "outlier_score": float(scores[i]),
                "method": method,
            }
            for i in order
        ]
    else:
        try:
            hits = index.query_id(args.object_id, args.k)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from exc
        rows = [
            {"rank": h.rank, "object_id": h.object_id, "score": round(h.score, 6)} for h in hits
        ]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
    else:
        for row in rows:
            print("  ".join(f"{v}" for v in row.values()))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed a data source into a catalogue (Parquet + manifest)")
    p.add_argument(
        "--model", required=True, help="checkpoint directory (e.g. runs/x/checkpoints/best)"
    )
    p.add_argument(
        "--random-init",
        type=int,
        metavar="SEED",
        help="embed with a freshly initialised model of the checkpoint's shape (a baseline)",
    )
    add_source_flags(p, hf=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--shard-rows",
        type=int,
        default=DEFAULT_SHARD_ROWS,
        help="rows per shard written as the run goes (an interrupted run continues after "
        "its last complete shard when run again)",
    )
    p.add_argument("--fresh", action="store_true", help="discard the shards of an interrupted run")
    p.add_argument("--out", required=True, help="catalogue directory to write")
    p.set_defaults(func=run_embed)

    p = sub.add_parser(
        "probe", help="linear (ridge) probes of catalogue columns from the embeddings"
    )
    p.add_argument("catalogue")
    p.add_argument("--labels", nargs="+", default=list(DEFAULT_LABELS))
    p.add_argument(
        "--baseline",
        action="append",
        metavar="NAME=DIR",
        help="another catalogue of the same objects to probe alongside (repeatable)",
    )
    p.add_argument(
        "--no-aperture", action="store_true", help="skip the aperture-photometry baseline"
    )
    p.add_argument(
        "--label-table",
        metavar="FILE",
        help="CSV or Parquet with object_id and label columns, joined onto the catalogue",
    )
    p.add_argument(
        "--categorical",
        nargs="+",
        metavar="LABEL",
        help="labels whose numbers are class codes (text and boolean labels are classes anyway): "
        "a logistic probe, scored by accuracy beside the commonest class's",
    )
    p.add_argument(
        "--shuffled",
        action="store_true",
        help="add the shuffled-label control (R^2 ~ 0, accuracy ~ chance)",
    )
    p.add_argument("--folds", type=int, default=5)
    p.add_argument(
        "--alpha", type=float, default=100.0, help="ridge lambda (logistic: C = 1 / alpha)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the fold split and bootstrap")
    p.add_argument("--bootstrap", type=int, default=0, help="bootstrap draws for a 95%% interval")
    p.add_argument("--json", help="also write the report as JSON to this file")
    p.set_defaults(func=run_probe)

    p = sub.add_parser("search", help="cosine-similarity search (or outliers) in a catalogue")
    p.add_argument("catalogue")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--object-id", help="find the objects most similar to this one")
    group.add_argument("--outliers", action="store_true", help="list the k most unusual objects")
    p.add_argument(
        "--method",
        choices=METHODS,
        default=None,
        help="anomaly score for --outliers (default: surprisal_excess; knn_cosine where the catalogue "
        "has no surprisal column)",
    )
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_search)
