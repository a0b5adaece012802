"""Draw docs/img/architecture.png: the packages as layers, and what may import what.

.venv/bin/python scripts/draw_architecture.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "architecture.png"
BOXES = {  # name: (x, y, width, text)
    "service": (
        0.5,
        4.0,
        3.6,
        "service/\nFastAPI: jobs, datasets, catalogues,\ninference, users, dashboard",
    ),
    "worker": (
        4.9,
        4.0,
        3.6,
        "worker/\nCelery tasks: claim, heartbeat,\nrunners per kind, launch/ (torchrun, Slurm)",
    ),
    "jobkinds": (
        2.7,
        2.6,
        3.6,
        "jobkinds/\nthe job contract (JobSpec) and the\nregistry: one module per kind",
    ),
    "state": (
        0.5,
        1.2,
        3.6,
        "state/\nsettings, the store (SQLAlchemy),\nmigrations, errors, users",
    ),
    "broker": (
        4.9,
        1.2,
        3.6,
        "broker/\nCelery apps, queue and task names\n(imports nothing of the project)",
    ),
    "astropt": (
        2.7,
        -0.2,
        3.6,
        "astropt/\nthe science library: model, codec, data,\ntokens, training, inference, science",
    ),
}
EDGES = [
    ("service", "jobkinds"),
    ("worker", "jobkinds"),
    ("jobkinds", "state"),
    ("service", "state"),
    ("worker", "state"),
    ("service", "broker"),
    ("worker", "broker"),
    ("jobkinds", "astropt"),
    ("service", "astropt"),
    ("worker", "astropt"),
    ("state", "astropt"),
]


def main() -> None:
    fig, ax = plt.subplots(figsize=(9.5, 6.4), dpi=110)
    centres = {}
    for name, (x, y, w, text) in BOXES.items():
        ax.add_patch(
            FancyBboxPatch(
                (x, y),
                w,
                0.95,
                boxstyle="round,pad=0.04,rounding_size=0.12",
                fc="#eef3fb" if name != "astropt" else "#fdf3e3",
                ec="#36507a",
                lw=1.4,
                zorder=2,
            )
        )
        ax.text(x + w / 2, y + 0.48, text, ha="center", va="center", fontsize=8.6, zorder=3)
        centres[name] = (x + w / 2, y + 0.48)
    for source, target in EDGES:
        (x0, y0), (x1, y1) = centres[source], centres[target]
        ax.add_patch(
            FancyArrowPatch(
                (x0, y0 - 0.5),
                (x1, y1 + 0.5),
                arrowstyle="-|>",
                mutation_scale=11,
                color="#7a8aa6",
                lw=0.9,
                shrinkA=2,
                shrinkB=2,
                alpha=0.85,
                zorder=1,
            )
        )
    ax.text(
        4.5,
        5.35,
        "HTTP -> service -> queue -> worker -> astropt:  an arrow is 'may import'",
        ha="center",
        fontsize=10,
        weight="bold",
    )
    ax.text(
        4.5,
        -0.55,
        "service imports worker only in service/cli.py (to start one); no package-level "
        "cycle outside astropt (tests/test_import_graph.py)",
        ha="center",
        fontsize=7.8,
        color="#555",
    )
    ax.set_xlim(0.2, 8.8)
    ax.set_ylim(-0.8, 5.6)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
