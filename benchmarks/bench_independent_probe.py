"""Probe models on galaxies of a generator they never trained on (astropt.data.sersic_mock).

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/bench_independent_probe.py \\
        --model 4x128=runs/mock-embed/checkpoints/last --n 600 --threads 1 \\
        --work bench-independent --json bench-independent.json

Writes ``n`` galaxies of the independent Sersic generator (seed ``--seed``; single Sersic
profiles n 0.5-4, Moffat PSFs of beta 2.5-4.5, Poisson sky + source + read noise) into
``WORK/data`` in the mock's on-disk schema, then embeds them, as a ``local`` source, with the
shipped model and every ``--model NAME=CHECKPOINT``, each with the default embedding recipe
(centre pooling of the last block, as ``astropt embed``), and with same-shape random-init
models of seeds ``--random-seeds`` (0, 1, 2) for every model shape. Every embedding is probed
with the project's probe (5-fold standardised ridge, lambda 100, fold seed 0), beside the
aperture photometry of the same cut-outs, on the truth labels. A model "beats random init"
on a label when its R^2 is above every seed's by more than the seeds' spread (max - min);
on every label where any of them reaches R^2 0.1 is the verdict.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from astropt.checkpoints.shipped import SHIPPED_MODEL_DIR
from astropt.data.sersic_mock import GENERATOR_VERSION, write_sersic_dataset
from astropt.science import EmbedOptions, SourceSpec, embed_catalogues, load_embed_model
from astropt.science.probe import APERTURE, probe_catalogue
from astropt.torch_policy import set_threads

LABELS = ("mag_r", "g_r", "hlr_arcsec", "q", "sersic_n")
THRESHOLD = 0.1


def shape_name(model_args: dict[str, Any]) -> str:
    return f"{model_args['n_layer']}x{model_args['n_embd']}"


def margin_verdict(
    trained: dict[str, float], randoms: list[dict[str, float]], labels: list[str]
) -> dict[str, Any]:
    """Per label: the margin over the best random seed and the seeds' spread; the model wins a
    label when the margin exceeds the spread, and wins overall when it wins every label where
    it or any seed reaches R^2 0.1."""
    per_label = {}
    for label in labels:
        values = [r[label] for r in randoms]
        margin, spread = trained[label] - max(values), max(values) - min(values)
        relevant = max(trained[label], *values) >= THRESHOLD
        per_label[label] = {
            "margin": margin,
            "spread": spread,
            "relevant": relevant,
            "wins": margin > spread,
        }
    relevant = [v for v in per_label.values() if v["relevant"]]
    return {"labels": per_label, "wins": bool(relevant) and all(v["wins"] for v in relevant)}


def _manifest(catalogue: Path) -> dict[str, Any]:
    try:
        return json.loads((catalogue / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def same_random_init(catalogue: Path, like: Path, seed: int, options: EmbedOptions) -> bool:
    """Whether ``catalogue`` already holds this random-init model's embeddings of the data the
    trained catalogue ``like`` was made from (a random init depends only on shape and seed)."""
    old, new = _manifest(catalogue), _manifest(like)
    return bool(
        old
        and old.get("model", {}).get("kind") == "random-init"
        and old["model"].get("seed") == seed
        and old["model"].get("model_args") == new["model"]["model_args"]
        and old.get("codec") == new["codec"]
        and old.get("data_source") == new["data_source"]
        and old.get("count") == new["count"]
        and (old.get("pooling"), old.get("layer"), old.get("centre"))
        == (options.pool, options.layer, options.centre)
    )


def weights_digest(checkpoint: Path) -> str:
    return hashlib.sha256((checkpoint / "model.safetensors").read_bytes()).hexdigest()


def embed_trained(
    checkpoint: Path, model: Any, source: SourceSpec, out: Path, options: EmbedOptions
) -> None:
    """Embed with a trained model unless ``out`` holds this checkpoint's catalogue of the same
    data and recipe already (the weights' digest, kept beside the catalogue, says which)."""
    stamp = out.with_name(out.name + ".json")
    key = {
        "weights_sha256": weights_digest(checkpoint),
        "data": source.describe(),
        "recipe": [options.pool, options.layer, options.centre],
    }
    try:
        if json.loads(stamp.read_text()) == key and _manifest(out):
            print(f"reusing {out}")
            return
    except (OSError, json.JSONDecodeError):
        pass
    stamp.unlink(missing_ok=True)
    embed(model, source, out, options)
    stamp.write_text(json.dumps(key))


def embed(model: Any, source: SourceSpec, out: Path, options: EmbedOptions) -> None:
    shutil.rmtree(out, ignore_errors=True)  # never resume a catalogue of another model
    started = time.perf_counter()
    embed_catalogues(model, source, {out: options})
    print(f"embedded {out.parent.name}/{out.name} ({time.perf_counter() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=CHECKPOINT",
        help="another model to probe (a checkpoint directory); the shipped model is always in",
    )
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--seed", type=int, default=2027, help="seed of the Sersic galaxies")
    parser.add_argument("--random-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--labels", nargs="+", default=list(LABELS))
    parser.add_argument("--probe-seed", type=int, default=0, help="seed of the fold split")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default="bench-independent", help="data and catalogues")
    parser.add_argument("--json", help="write all scores here")
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    work = Path(args.work)
    models = {"shipped": SHIPPED_MODEL_DIR}
    for item in args.model:
        name, sep, path = item.partition("=")
        if not sep or not name or name in models:
            raise SystemExit(f"--model wants a new NAME=CHECKPOINT, got {item!r}")
        models[name] = Path(path)

    started = time.perf_counter()
    data = write_sersic_dataset(work / "data", args.n, args.seed)
    print(
        f"{args.n} Sersic galaxies of seed {args.seed} in {data} ({time.perf_counter() - started:.0f} s)"
    )
    source = SourceSpec("local", path=str(data))
    options = EmbedOptions()  # the default recipe of astropt embed, /embed and embed jobs

    scores: dict[str, dict[str, float]] = {}
    reports: dict[str, Any] = {}
    shapes: dict[str, list[str]] = {}  # shape -> random-init column names
    meta: dict[str, Any] = {}
    for name, checkpoint in models.items():
        trained = load_embed_model(checkpoint)
        shape = shape_name(trained.meta["model_args"])
        meta[name] = {
            "checkpoint": str(checkpoint),
            "shape": shape,
            "step": trained.meta.get("step"),
            "best_val_loss": trained.meta.get("best_val_loss"),
        }
        embed_trained(checkpoint, trained, source, work / name / "trained", options)
        baselines: dict[str, str | Path] = {}
        for seed in args.random_seeds:
            column = f"random{shape}-s{seed}"
            out = work / f"random-{shape}" / f"s{seed}"
            if column not in shapes.setdefault(shape, []):
                if same_random_init(out, work / name / "trained", seed, options):
                    print(f"reusing {out}")
                else:
                    embed(load_embed_model(checkpoint, random_init=seed), source, out, options)
                shapes[shape].append(column)
            baselines[column] = out
        report = probe_catalogue(
            work / name / "trained", args.labels, baselines=baselines, seed=args.probe_seed
        )
        reports[name] = report.to_dict()
        for feature in ("embedding", *baselines, APERTURE):
            key = name if feature == "embedding" else feature
            scores[key] = {label: report.r2(feature, label) for label in args.labels}

    verdicts = {
        name: margin_verdict(
            scores[name], [scores[c] for c in shapes[meta[name]["shape"]]], args.labels
        )
        for name in models
    }
    columns = [*models, *(c for cols in shapes.values() for c in cols), APERTURE]
    print(f"\nR^2 (5-fold ridge) on {args.n} galaxies of the independent generator")
    print(f"{'label':<12}" + "".join(f"{c:>16}" for c in columns))
    for label in args.labels:
        print(f"{label:<12}" + "".join(f"{scores[c][label]:>16.3f}" for c in columns))
    print("\nmarkdown:")
    print("| label | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for label in args.labels:
        print(f"| {label} | " + " | ".join(f"{scores[c][label]:.2f}" for c in columns) + " |")
    for name, verdict in verdicts.items():
        wins = [k for k, v in verdict["labels"].items() if v["relevant"] and v["wins"]]
        print(
            f"{name} ({meta[name]['shape']}, step {meta[name]['step']}): beats random init by "
            f"more than the seeds' spread on {wins or 'no label'}"
            f"{' -> on every label >= 0.1' if verdict['wins'] else ''}"
        )
    if args.json:
        record = {
            "generator": GENERATOR_VERSION,
            "n": args.n,
            "seed": args.seed,
            "labels": args.labels,
            "recipe": {"pool": options.pool, "layer": options.layer, "centre": options.centre},
            "models": meta,
            "random_columns": shapes,
            "r2": scores,
            "verdicts": verdicts,
            "reports": reports,
        }
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
