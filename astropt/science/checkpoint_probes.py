"""Probe every saved checkpoint of a run: R^2 per label against training step.

The scaling-study plot: one fixed set of galaxies (a mock set the run never trained on, by
default 600 galaxies of seed 777) is read once as the run's models read it (codec tokens or
flux patches: :mod:`astropt.science.readers`; or a token data set's tokens as they are, with the
labels it carries, when ``source`` is a ``tokens`` source); each checkpoint of
the run (``checkpoints/step_*``, and ``last`` when its step has no step checkpoint) embeds it
and the cross-validated ridge probe of :mod:`astropt.science.model_probe` scores each label.
A randomly initialised model of the same shape is probed alongside (the control a trained
model must beat). Writes ``probe_checkpoints.json`` and ``probe_checkpoints.png``.

    report = probe_checkpoints("runs/x", ["mag_r", "g_r"])
    write_report(report, "runs/x")
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astropt.checkpoints import load_checkpoint
from astropt.codec import check_same_codec
from astropt.model import GPT
from astropt.plotting import write_atomic
from astropt.run_dir import CONFIG_FILE, STEP_NAME, WEIGHTS_FILE, RunDir
from astropt.science.embedding import EmbedModel, EmbedOptions, load_embed_model
from astropt.science.model_probe import ProbeSet, probe_model, select_labels
from astropt.science.probe import DEFAULT_ALPHA, DEFAULT_FOLDS, LabelScore
from astropt.science.readers import ModelReader
from astropt.science.sources import SourceSpec, open_source
from astropt.science.token_source import check_model_codec, open_token_source

JSON_NAME = "probe_checkpoints.json"
PNG_NAME = "probe_checkpoints.png"
DEFAULT_SOURCE = SourceSpec("mock", n=600, seed=777)  # frozen: safe as a default
DEFAULT_OPTIONS = EmbedOptions()
Progress = Callable[[str, int, int], None]  # (checkpoint, done, total)


@dataclass
class CheckpointScores:
    checkpoint: str  # "step_000100", "last" or "random-init"
    step: int | None  # None for the random-init control
    scores: dict[str, LabelScore | None]

    def r2(self, label: str) -> float | None:
        score = self.scores.get(label)
        return None if score is None else score.r2_mean


@dataclass
class CheckpointProbes:
    run_dir: str
    source: dict[str, Any]
    labels: list[str]
    pool: str
    layer: int
    folds: int
    alpha: float
    rows: list[CheckpointScores] = field(default_factory=list)  # by step
    random_init: CheckpointScores | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_checkpoints(run_dir: str | Path) -> list[tuple[str, int, Path]]:
    """(name, step, path) of the run's step checkpoints, and of ``last`` when its step is not
    among them, in step order."""
    root = RunDir(Path(run_dir)).checkpoints
    found: dict[int, tuple[str, int, Path]] = {}
    if root.is_dir():
        for entry in root.iterdir():
            if (match := STEP_NAME.match(entry.name)) and (entry / WEIGHTS_FILE).is_file():
                found[int(match.group(1))] = (entry.name, int(match.group(1)), entry)
    last = root / "last"
    if (last / WEIGHTS_FILE).is_file():
        step = int(json.loads((last / CONFIG_FILE).read_text()).get("step", 0))
        found.setdefault(step, ("last", step, last))
    if not found:
        raise FileNotFoundError(
            f"{run_dir} has no checkpoints (checkpoints/step_*/ or checkpoints/last/)"
        )
    return [found[step] for step in sorted(found)]


def probe_checkpoints(
    run_dir: str | Path,
    labels: list[str],
    source: SourceSpec = DEFAULT_SOURCE,
    options: EmbedOptions = DEFAULT_OPTIONS,
    *,
    folds: int = DEFAULT_FOLDS,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    random_init: int | None = 0,
    device: str = "cpu",
    progress: Progress | None = None,
) -> CheckpointProbes:
    """Probe ``labels`` from every checkpoint of ``run_dir`` on the galaxies of ``source``
    (and from a same-shape model initialised from ``random_init``, unless None)."""
    if not labels:
        raise ValueError("name at least one label to probe")
    checkpoints = run_checkpoints(run_dir)
    first = load_embed_model(checkpoints[0][2], device=device)
    reader = first.reader
    object_ids, columns, parts = _read_inputs(source, first, checkpoints[0][0], options.batch_size)
    target = select_labels(columns, labels, list(range(len(object_ids))))
    inputs = {k: torch.cat([p[k] for p in parts]).cpu() for k in parts[0]}
    probe_set = ProbeSet(object_ids, inputs, target, reader)
    report = CheckpointProbes(
        str(Path(run_dir).resolve()),
        source.describe(),
        list(labels),
        options.pool,
        options.layer,
        folds,
        alpha,
    )
    total = len(checkpoints) + (random_init is not None)

    def score(model: GPT) -> dict[str, LabelScore | None]:
        return probe_model(model, probe_set, options, folds=folds, alpha=alpha, seed=seed)

    for done, (name, step, path) in enumerate(checkpoints):
        if progress:
            progress(name, done, total)
        model, meta = load_checkpoint(path, device=device)
        if first.codec is not None:
            check_same_codec(meta.get("codec") or {}, first.codec.info, f"checkpoint {name}")
        elif ModelReader.for_model(meta, None) != reader:
            raise ValueError(f"checkpoint {name} reads patches otherwise than {checkpoints[0][0]}")
        report.rows.append(CheckpointScores(name, step, score(model)))
    if random_init is not None:
        if progress:
            progress("random-init", len(checkpoints), total)
        control = load_embed_model(checkpoints[0][2], device=device, random_init=random_init)
        report.random_init = CheckpointScores("random-init", None, score(control.model))
    if progress:
        progress("", total, total)
    return report


def _read_inputs(
    source: SourceSpec, first: EmbedModel, name: str, batch_size: int
) -> tuple[list[str], dict[str, np.ndarray], list[dict[str, torch.Tensor]]]:
    """Object ids, label columns and model inputs (in batches) of the probe's galaxies: images
    read as the model reads them, or a token data set's tokens as they are (no codec runs)."""
    reader = first.reader
    if source.kind == "tokens":
        tokens = open_token_source(source)
        try:
            check_model_codec(first.codec, tokens, f"checkpoint {name}")
            parts = [reader.token_inputs(batch) for _, batch in tokens.batches(batch_size)]
            return list(tokens.object_ids), tokens.columns, parts
        finally:
            tokens.close()
    opened = open_source(source)
    bands = tuple(opened.spec.settings().bands)
    parts = [reader.flux_inputs(flux, bands) for _, flux in opened.batches(batch_size)]
    return list(opened.object_ids), opened.columns, parts


def figure(report: CheckpointProbes) -> bytes:
    """PNG: R^2 per label against the checkpoint's step (random init dashed, same colour)."""
    import io

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, label in enumerate(report.labels):
        colour = colours[k % len(colours)]
        points = [(row.step, row.r2(label)) for row in report.rows if row.r2(label) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), "o-", color=colour, ms=4, label=label)
        control = report.random_init.r2(label) if report.random_init else None
        if control is not None:
            ax.axhline(control, color=colour, ls="--", lw=0.8, alpha=0.7)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_ylim(max(-0.5, ax.get_ylim()[0]), 1.0)
    ax.set_xlabel("training step of the checkpoint")
    ax.set_ylabel(f"ridge probe R² ({report.folds}-fold)")
    n = report.source.get("n") or "?"
    ax.set_title(
        f"probe vs checkpoint: {n} galaxies, {report.pool} pool"
        + (" (dashed: random init)" if report.random_init else "")
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_report(report: CheckpointProbes, out_dir: str | Path) -> tuple[Path, Path]:
    """``probe_checkpoints.json`` and ``.png`` in ``out_dir`` (each written whole, then renamed)."""
    out = Path(out_dir)
    json_path, png_path = out / JSON_NAME, out / PNG_NAME
    write_atomic(
        json_path, (json.dumps(_clean(report.to_dict()), indent=2, allow_nan=False) + "\n").encode()
    )
    write_atomic(png_path, figure(report))
    return json_path, png_path


def _clean(value: Any) -> Any:
    """NaN (a label without variance) and infinities as null: JSON has neither."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
