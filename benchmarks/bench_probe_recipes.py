"""Linear-probe recipes: do a trained model's embeddings beat a same-shape random-init model?

    PYTHONPATH=. python benchmarks/bench_probe_recipes.py \\
        --train-config astropt/configs/mock-small.yaml --set codec=shipped --run runs/mock-small \\
        --n 600 --seed 777 --recipes mean@-1 centre8@-1 --threads 1

Trains the model first when ``--train-config`` is given (resuming a finished run is a no-op),
then embeds ``n`` mock galaxies of ``seed`` (the training mock uses seed 0, so none was seen)
with the checkpoint and with a freshly initialised model of the same shape, for every recipe
(``POOL@LAYER``; POOL is ``mean``, ``last`` or ``centreK``), from one forward pass per model.
Each recipe is probed with 5-fold standardised ridge (lambda 100) for every label, beside the
random-init model's embeddings and the aperture photometry. A recipe "wins" when the trained
embeddings beat random init on every label where either reaches R^2 0.1.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from astropt.pooling import DEFAULT_CENTRE
from astropt.science import (
    EmbedOptions,
    SourceSpec,
    embed_catalogues,
    load_embed_model,
    probe_catalogue,
)
from astropt.science.commands import DEFAULT_LABELS
from astropt.torch_policy import set_threads

THRESHOLD = 0.1


def parse_recipe(text: str) -> EmbedOptions:
    pool, _, layer = text.partition("@")
    centre = DEFAULT_CENTRE
    if pool.startswith("centre") and pool != "centre":
        pool, centre = "centre", int(pool[len("centre") :])
    return EmbedOptions(pool=pool, layer=int(layer or -1), centre=centre)


def recipe_name(o: EmbedOptions) -> str:
    return f"{o.pool}{o.centre if o.pool == 'centre' else ''}@{o.layer}"


def train_first(config_path: str, overrides: list[str], run: str) -> Path:
    from astropt.config import TrainConfig
    from astropt.training import train

    config = TrainConfig.from_yaml(config_path, [*overrides, f"out_dir={run}"])
    started = time.perf_counter()
    result = train(config)
    print(
        f"training: {result.status} at step {result.step}, best val {result.best_val_loss} "
        f"({time.perf_counter() - started:.0f} s)"
    )
    return Path(run) / "checkpoints"


def wins(trained: dict[str, float], random: dict[str, float]) -> bool:
    relevant = [k for k in trained if max(trained[k], random[k]) >= THRESHOLD]
    return bool(relevant) and all(trained[k] > random[k] for k in relevant)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint directory (default: RUN/checkpoints/KIND)")
    parser.add_argument("--run", default="runs/mock-small", help="run directory")
    parser.add_argument("--kind", default="best", choices=("best", "last"))
    parser.add_argument("--train-config", help="train this config into --run first")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="training override"
    )
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--recipes", nargs="+", default=["mean@-1", "centre8@-1"])
    parser.add_argument("--labels", nargs="+", default=list(DEFAULT_LABELS))
    parser.add_argument("--random-seed", type=int, default=0, help="seed of the random-init model")
    parser.add_argument("--probe-seed", type=int, default=0, help="seed of the fold split")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default="bench-probe", help="where the catalogues go")
    parser.add_argument("--json", help="write all scores here")
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    if args.train_config:
        train_first(args.train_config, args.set, args.run)
    checkpoint = Path(args.checkpoint or Path(args.run) / "checkpoints" / args.kind)
    recipes = [parse_recipe(r) for r in args.recipes]
    source = SourceSpec("mock", n=args.n, seed=args.seed)
    work = Path(args.work)
    for kind, init in (("trained", None), ("random", args.random_seed)):
        model = load_embed_model(checkpoint, random_init=init)
        started = time.perf_counter()
        embed_catalogues(model, source, {work / kind / recipe_name(o): o for o in recipes})
        print(
            f"embedded {args.n} galaxies with the {kind} model ({time.perf_counter() - started:.0f} s)"
        )
    rows = []
    print(f"\n{'recipe':<14}{'label':<18}{'trained':>9}{'random':>9}{'aperture':>10}")
    for o in recipes:
        name = recipe_name(o)
        report = probe_catalogue(
            work / "trained" / name,
            args.labels,
            baselines={"random": work / "random" / name},
            seed=args.probe_seed,
        )
        scores = {
            f: {label: report.r2(f, label) for label in args.labels}
            for f in ("embedding", "random", "aperture_flux")
        }
        for label in args.labels:
            print(
                f"{name:<14}{label:<18}{scores['embedding'][label]:>9.3f}{scores['random'][label]:>9.3f}"
                f"{scores['aperture_flux'][label]:>10.3f}"
            )
        verdict = wins(scores["embedding"], scores["random"])
        print(
            f"{name:<14}{'-> beats random on every label >= 0.1' if verdict else '-> does not beat random'}"
        )
        rows.append(
            {
                "recipe": name,
                "checkpoint": str(checkpoint),
                "wins": verdict,
                "scores": scores,
                "report": report.to_dict(),
            }
        )
    print(
        "\nbest recipe per label (a stricter test: the trained model's best against random init's best)"
    )
    for label in args.labels:
        best = {
            f: max(rows, key=lambda r, f=f: r["scores"][f][label]) for f in ("embedding", "random")
        }
        print(
            f"  {label:<18} trained {best['embedding']['scores']['embedding'][label]:.3f} "
            f"({best['embedding']['recipe']})  random {best['random']['scores']['random'][label]:.3f} "
            f"({best['random']['recipe']})"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
