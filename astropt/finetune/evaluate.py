"""Scores of a fine-tune against its baselines, per label and split, and the test figure.

- ``finetune``: the trained head (on the adapted or fine-tuned backbone);
- ``probe``: a ridge regression on the frozen initial model's pooled embeddings
  (:func:`astropt.science.probe.ridge_holdout`: features standardised on the training split,
  alpha chosen on the validation split from a log grid; classification: ridge on one-hot
  targets, argmax) — the science package's linear probe;
- ``constant``: the training split's mean (regression) or most frequent class.

Regression is scored by R^2 and RMSE in the label's units, classification by accuracy.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from astropt.finetune.head import LabelSpec, _class_name
from astropt.science.probe import r2_score, ridge_holdout


def scores(
    specs: list[LabelSpec],
    truth: dict[str, np.ndarray],
    pred: dict[str, np.ndarray],
    rows: np.ndarray,
) -> dict[str, dict[str, float]]:
    """Per label: ``{"r2", "rmse"}`` or ``{"accuracy"}`` over ``rows``."""
    out = {}
    for spec in specs:
        y, p = truth[spec.name][rows], pred[spec.name][rows]
        if spec.kind == "regression":
            y = y.astype(np.float64)
            out[spec.name] = {"r2": r2_score(y, p), "rmse": float(np.sqrt(np.mean((y - p) ** 2)))}
        else:
            names = np.array([_class_name(v) for v in y])
            picked = np.array(spec.classes)[p.argmax(axis=1)]
            out[spec.name] = {"accuracy": float(np.mean(names == picked))}
    return out


def constant_predictions(
    specs: list[LabelSpec], truth: dict[str, np.ndarray], train: np.ndarray, n: int
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.kind == "regression":
            out[spec.name] = np.full(n, float(truth[spec.name][train].astype(np.float64).mean()))
        else:
            names = [_class_name(v) for v in truth[spec.name][train]]
            probs = np.zeros((n, spec.width))
            probs[:, spec.classes.index(max(set(names), key=names.count))] = 1.0
            out[spec.name] = probs
    return out


def ridge_probe(
    features: np.ndarray,
    targets: np.ndarray,
    specs: list[LabelSpec],
    train: np.ndarray,
    val: np.ndarray,
) -> tuple[dict[str, np.ndarray], float]:
    """Predictions for every row of a ridge probe and the alpha chosen on ``val``.

    ``targets``: the encoded targets (z-scores / class indices, as the head is trained on).
    """
    columns = []
    for j, spec in enumerate(specs):
        t = targets[:, j]
        columns.append(
            t[:, None] if spec.kind == "regression" else np.eye(spec.width)[t.astype(int)]
        )
    raw, alpha = ridge_holdout(features, np.concatenate(columns, axis=1), train, val)
    out, start = {}, 0
    for spec in specs:
        part = raw[:, start : start + spec.width]
        if spec.kind == "regression":
            out[spec.name] = part[:, 0] * spec.std + spec.mean
        else:  # scores, not probabilities: only their argmax is scored
            out[spec.name] = part
        start += spec.width
    return out, alpha


def test_figure(
    specs: list[LabelSpec],
    truth: dict[str, np.ndarray],
    methods: dict[str, dict[str, np.ndarray]],
    test: np.ndarray,
    metrics: dict[str, Any],
) -> bytes:
    """PNG: prediction vs truth on the test split per regression label (one colour per method),
    test accuracy per method for classification labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(specs)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.0), squeeze=False)
    colours = {"finetune": "tab:blue", "probe": "tab:orange", "constant": "tab:gray"}
    for ax, spec in zip(axes[0], specs, strict=True):
        if spec.kind == "regression":
            y = truth[spec.name][test].astype(np.float64)
            for method, pred in methods.items():
                r2 = metrics[method]["test"][spec.name]["r2"]
                ax.scatter(
                    y,
                    pred[spec.name][test],
                    s=10,
                    alpha=0.7,
                    color=colours.get(method),
                    label=f"{method} R²={r2:.2f}",
                )
            lo, hi = float(y.min()), float(y.max())
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            ax.set_xlabel(f"true {spec.name}")
            ax.set_ylabel(f"predicted {spec.name}")
        else:
            names = list(methods)
            accuracy = [metrics[m]["test"][spec.name]["accuracy"] for m in names]
            ax.bar(names, accuracy, color=[colours.get(m) for m in names])
            ax.set_ylim(0, 1)
            ax.set_ylabel(f"test accuracy, {spec.name}")
        ax.set_title(f"{spec.name} (test, n={len(test)})")
        ax.legend(fontsize=8) if spec.kind == "regression" else None
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()
