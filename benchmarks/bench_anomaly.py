"""Which anomaly score finds planted anomalies? Recall in the top 2 x planted, per method and kind.

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/bench_anomaly.py --normal 480 --per-kind 12 \
        --per-trial 10 --trials 60 --json anomaly.json --png docs/img/anomaly-recall.png \
        --gallery docs/img/anomaly-gallery.png

Normal galaxies are the project's GalSim mock (seed 4242: no training mock uses it); the
anomalies come from :mod:`astropt.data.anomalies`, ``--per-kind`` of each kind. Everything is
embedded once with the model (default: the shipped one, the default pooling) with each galaxy's
surprisal. A trial plants ``--per-trial`` anomalies (480 + 10: 2.0%) drawn from one set of kinds
among all the normal galaxies and scores every object with every method; a planted anomaly is
found when it is in the top ``2 x per-trial``. The kinds are split: the *tuned* kinds chose
the default method; the *held-out* kinds were looked at only after that choice.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from astropt.data.anomalies import KINDS, planted
from astropt.data.mock import simulate_galaxy
from astropt.science.anomaly import DEFAULT_METHOD, METHODS, anomaly_scores
from astropt.science.anomaly_eval import Embedded, Recall, embed_fluxes, run_trials, top_k_hits
from astropt.science.embedding import load_embed_model

TUNED = ("star_spikes", "satellite_trail", "bad_column", "cosmic_rays", "pure_noise")
HELD_OUT = tuple(
    k for k in KINDS if k not in TUNED
)  # lensed_arc, merger, bleed_column, chip_gap, missing_band
SHIPPED = Path(__file__).resolve().parents[1] / "astropt" / "shipped_model"


def table(results: dict[str, dict[str, Recall]], chance: float) -> str:
    head = ["method", *TUNED, "**tuned**", *HELD_OUT, "**held-out**"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in METHODS:
        tuned, held = results["tuned"][method], results["held_out"][method]
        cells = [f"`{method}`" + (" (default)" if method == DEFAULT_METHOD else "")]
        cells += [f"{tuned.of([k]):.2f}" for k in TUNED] + [f"**{tuned.of():.2f}**"]
        cells += [f"{held.of([k]):.2f}" for k in HELD_OUT] + [f"**{held.of():.2f}**"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"| chance | {' | '.join([f'{chance:.2f}'] * (len(head) - 1))} |")
    return "\n".join(lines)


def table_png(results: dict[str, dict[str, Recall]], chance: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [*TUNED, "TUNED", *HELD_OUT, "HELD-OUT"]
    values = np.array(
        [
            [results["tuned"][m].of([k]) for k in TUNED]
            + [results["tuned"][m].of()]
            + [results["held_out"][m].of([k]) for k in HELD_OUT]
            + [results["held_out"][m].of()]
            for m in METHODS
        ]
    )
    fig, ax = plt.subplots(figsize=(12, 0.45 * len(METHODS) + 2.2))
    ax.imshow(values, vmin=0, vmax=1, cmap="Greens", aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(
        range(len(METHODS)),
        [m + (" *" if m == DEFAULT_METHOD else "") for m in METHODS],
        fontsize=8,
    )
    for (i, j), v in np.ndenumerate(values):
        ax.text(
            j,
            i,
            f"{v:.2f}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if v > 0.6 else "black",
        )
    ax.axvline(len(TUNED) + 0.5, color="k", lw=1)
    ax.set_title(
        f"{title}\nrecall in the top 2 x planted (chance {chance:.2f}); * = default", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gallery_png(
    normal_flux: list[np.ndarray],
    anomaly_flux: list[np.ndarray],
    normal: Embedded,
    anomalies: Embedded,
    seed: int,
    path: Path,
) -> None:
    """The 32 most unusual objects of one trial (every kind planted once) by the default method,
    as the service's gallery draws them."""
    from astropt.images import centre_crop
    from astropt.science.cutouts import PIXELS, GalaxyImage
    from astropt.science.cutouts import gallery_png as draw

    rng = np.random.default_rng(seed)
    pick = np.array([rng.choice(np.flatnonzero(anomalies.kinds == k)) for k in KINDS])
    x = np.concatenate([normal.embeddings, anomalies.embeddings[pick]])
    s = (
        None
        if normal.surprisal is None
        else np.concatenate([normal.surprisal, anomalies.surprisal[pick]])
    )
    scores = anomaly_scores(DEFAULT_METHOD, x, s)
    order = np.argsort(-scores, kind="stable")[:32]
    n = len(normal.kinds)
    images = [
        GalaxyImage(centre_crop(normal_flux[i] if i < n else anomaly_flux[pick[i - n]]), PIXELS)
        for i in order
    ]
    captions = [
        f"#{r + 1} " + ("normal" if i < n else str(anomalies.kinds[pick[i - n]]))
        for r, i in enumerate(order)
    ]
    found = int(top_k_hits(scores, np.arange(len(x)) >= n).sum())
    path.write_bytes(
        draw(
            images,
            captions,
            f"most unusual by {DEFAULT_METHOD}: {n} normal + {len(pick)} planted "
            f"(one per kind), {found} in the top {2 * len(pick)}",
        )
    )


def thumbnails_png(
    normal_flux: list[np.ndarray],
    anomaly_flux: list[np.ndarray],
    normal: Embedded,
    anomalies: Embedded,
    path: Path,
    grid: int = 20,
) -> None:
    """The thumbnail map (PCA, as the service draws it) of every galaxy embedded: the normal ones
    and every planted anomaly."""
    from astropt.images import centre_crop
    from astropt.science.cutouts import cutout_rgb
    from astropt.science.search import pca_map
    from astropt.science.thumbnail_map import thumbnail_cells, thumbnail_sheet

    flux = normal_flux + anomaly_flux
    xy = pca_map(np.concatenate([normal.embeddings, anomalies.embeddings]))
    cells = thumbnail_cells(xy, grid)
    path.write_bytes(
        thumbnail_sheet(cells, grid, 48, lambda row: cutout_rgb(centre_crop(flux[row])))
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(SHIPPED))
    parser.add_argument("--normal", type=int, default=480)
    parser.add_argument("--per-kind", type=int, default=12)
    parser.add_argument("--per-trial", type=int, default=10)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--png", type=Path)
    parser.add_argument("--gallery", type=Path)
    parser.add_argument(
        "--thumbnails", type=Path, help="the thumbnail map of every galaxy embedded (PNG)"
    )
    parser.add_argument(
        "--cache", type=Path, help="an .npz of the embeddings: written, or read when it exists"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model = load_embed_model(args.model)
    normal_flux = [simulate_galaxy(args.seed, i)["flux"] for i in range(args.normal)]
    anomaly_flux, anomaly_kinds = [], []
    for kind in KINDS:
        for i in range(args.per_kind):
            anomaly_flux.append(planted(kind, args.seed, i)["flux"])
            anomaly_kinds.append(kind)
    made = time.perf_counter()
    if args.cache and args.cache.is_file():
        saved = np.load(args.cache, allow_pickle=False)
        normal, anomalies = (
            Embedded(saved[f"{p}_x"], saved.get(f"{p}_s", None), saved[f"{p}_k"])
            for p in ("normal", "anomalies")
        )
    else:
        normal = embed_fluxes(model, normal_flux, ["normal"] * args.normal)
        anomalies = embed_fluxes(model, anomaly_flux, anomaly_kinds)
        if args.cache:
            arrays = {
                f"{p}_{n}": v
                for p, e in (("normal", normal), ("anomalies", anomalies))
                for n, v in (("x", e.embeddings), ("s", e.surprisal), ("k", e.kinds))
                if v is not None
            }
            np.savez(args.cache, **arrays)
    embedded = time.perf_counter()
    results = {
        name: run_trials(
            normal,
            anomalies,
            METHODS,
            kinds,
            per_trial=args.per_trial,
            trials=args.trials,
            seed=args.seed,
        )
        for name, kinds in (("tuned", TUNED), ("held_out", HELD_OUT))
    }
    chance = 2 * args.per_trial / (args.normal + args.per_trial)
    print(
        f"{args.normal} normal + {args.per_trial} planted per trial "
        f"({100 * args.per_trial / (args.normal + args.per_trial):.1f}%), {args.trials} trials per kind set; "
        f"made {made - started:.0f} s, embedded {embedded - made:.0f} s, scored {time.perf_counter() - embedded:.0f} s"
    )
    print(table(results, chance))
    if normal.surprisal is not None:
        for kind in KINDS:
            s = anomalies.surprisal[anomalies.kinds == kind]
            print(
                f"surprisal {kind}: median {np.median(s):.3f} (normal: median {np.median(normal.surprisal):.3f}, "
                f"99th pct {np.percentile(normal.surprisal, 99):.3f})"
            )
    if args.json:
        body = {
            "normal": args.normal,
            "per_trial": args.per_trial,
            "trials": args.trials,
            "chance": chance,
            "model": args.model,
            "tuned_kinds": TUNED,
            "held_out_kinds": HELD_OUT,
            "default": DEFAULT_METHOD,
            "recall": {
                name: {
                    m: {"all": r.of(), **{k: r.of([k]) for k in r.planted}} for m, r in res.items()
                }
                for name, res in results.items()
            },
        }
        args.json.write_text(json.dumps(body, indent=2))
    title = f"{args.normal} mock galaxies + {args.per_trial} planted, {args.trials} trials, {Path(args.model).name}"
    if args.png:
        table_png(results, chance, args.png, title)
    if args.gallery:
        gallery_png(normal_flux, anomaly_flux, normal, anomalies, args.seed, args.gallery)
    if args.thumbnails:
        thumbnails_png(normal_flux, anomaly_flux, normal, anomalies, args.thumbnails)


if __name__ == "__main__":
    main()
