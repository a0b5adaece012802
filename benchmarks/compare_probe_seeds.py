"""Does a recipe beat random init against every random-init seed? One table from several runs.

    python benchmarks/compare_probe_seeds.py bench-r0.json bench-r1.json bench-r2.json

Each JSON is what ``bench_probe_recipes.py --json`` wrote for one ``--random-seed`` (the same
checkpoint, galaxies and recipes). For every recipe it prints the trained R^2 beside the
random-init R^2 of each seed, and whether the trained embeddings beat each seed's on every
label where either reaches R^2 0.1 (the criterion of bench_probe_recipes.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# the criterion has one owner; the script's own folder is on sys.path when it runs
from bench_probe_recipes import wins


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "runs", nargs="+", help="bench_probe_recipes.py JSON files, one per random seed"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    runs = [
        {row["recipe"]: row["scores"] for row in json.loads(Path(p).read_text())} for p in args.runs
    ]
    recipes = [r for r in runs[0] if all(r in run for run in runs)]
    labels = list(runs[0][recipes[0]]["embedding"])
    if args.markdown:
        print("| recipe | " + " | ".join(labels) + " | beats random (each seed) |")
        print("|---" * (len(labels) + 2) + "|")
    for recipe in recipes:
        trained = runs[0][recipe]["embedding"]
        randoms = [run[recipe]["random"] for run in runs]
        verdicts = ", ".join("yes" if wins(trained, r) else "no" for r in randoms)
        cells = [f"{trained[k]:.2f} / " + ", ".join(f"{r[k]:.2f}" for r in randoms) for k in labels]
        if args.markdown:
            print(f"| `{recipe}` | " + " | ".join(cells) + f" | {verdicts} |")
        else:
            print(
                f"{recipe:<13} "
                + "  ".join(f"{k}={c}" for k, c in zip(labels, cells, strict=True))
                + f"  -> {verdicts}"
            )


if __name__ == "__main__":
    main()
