"""Figures of a catalogue: probe predictions against the truth, the 2-D map, search mosaics."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from astropt.science.catalogue import Catalogue  # noqa: E402
from astropt.science.probe import DEFAULT_ALPHA, DEFAULT_FOLDS  # noqa: E402

MAX_POINTS = 20_000  # a scatter plot draws at most this many objects (an even subsample)


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def out_of_fold_predictions(
    x: np.ndarray,
    y: np.ndarray,
    *,
    folds: int = DEFAULT_FOLDS,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(truth, prediction) of the rows with a finite label, each predicted by the ridge probe
    fitted on the other folds: the folds of :func:`astropt.science.probe.ridge_cv`."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(y) & np.isfinite(x).all(axis=1)
    model = make_pipeline(StandardScaler(), Ridge(alpha=alpha))
    pred = cross_val_predict(
        model, x[keep], y[keep], cv=KFold(folds, shuffle=True, random_state=seed)
    )
    return y[keep], pred


def out_of_fold_classes(
    x: np.ndarray,
    y: np.ndarray,
    *,
    folds: int = DEFAULT_FOLDS,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(truth, prediction) of the labelled rows by the logistic probe's folds
    (:func:`astropt.science.probe.logistic_cv`)."""
    from astropt.science.probe import _standardised_logistic, class_folds

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=str)
    keep = (y != "") & np.isfinite(x).all(axis=1)
    x, y = x[keep], y[keep]
    pred = np.empty_like(y)
    for train, test in class_folds(y, folds, seed):
        pred[test] = _standardised_logistic(alpha).fit(x[train], y[train]).predict(x[test])
    return y, pred


def _confusion(ax: plt.Axes, truth: np.ndarray, pred: np.ndarray, label: str, score: float) -> None:
    """Row-normalised confusion matrix: each true class's share predicted as each class."""
    names = list(np.unique(truth))
    index = {n: i for i, n in enumerate(names)}
    counts = np.zeros((len(names), len(names)))
    for t, p in zip(truth, pred, strict=True):
        counts[index[t], index[p]] += 1
    shares = counts / counts.sum(axis=1, keepdims=True)
    ax.imshow(shares, vmin=0, vmax=1, cmap="Blues")
    ticks = range(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(ticks, names, fontsize=7)
    if len(names) <= 8:
        for (i, j), share in np.ndenumerate(shares):
            ax.text(
                j,
                i,
                f"{share:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if share > 0.5 else "black",
            )
    ax.set(xlabel="predicted", ylabel=f"true {label}", title=f"{label}: accuracy {score:.3f}")


def probe_figure(
    cat: Catalogue,
    labels: Sequence[str],
    r2: dict[str, float],
    *,
    folds: int = DEFAULT_FOLDS,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    categorical: Sequence[str] = (),
) -> bytes:
    """PNG: one panel per label, out-of-fold prediction against the truth, R^2 in the title
    (classes: the confusion matrix, accuracy in the title)."""
    cols = min(3, len(labels))
    rows = -(-len(labels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.8 * rows), squeeze=False)
    for ax, label in zip(axes.flat, labels, strict=False):
        if label in categorical or cat.is_categorical(label):
            truth, pred = out_of_fold_classes(
                cat.embeddings, cat.classes(label), folds=folds, alpha=alpha, seed=seed
            )
            _confusion(ax, truth, pred, label, r2.get(label, float("nan")))
            continue
        truth, pred = out_of_fold_predictions(
            cat.embeddings, cat.label(label), folds=folds, alpha=alpha, seed=seed
        )
        step = max(1, len(truth) // MAX_POINTS)
        ax.scatter(truth[::step], pred[::step], s=4, alpha=0.5)
        lo, hi = np.nanmin(truth), np.nanmax(truth)
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set(
            xlabel=f"true {label}",
            ylabel="predicted",
            title=f"{label}: R² {r2.get(label, float('nan')):.3f}",
        )
    for ax in list(axes.flat)[len(labels) :]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


MAP_SCALES = ("linear", "log", "rank")
NO_VALUE_GREY = "#9a9a9a"


def scaled_colours(values: np.ndarray, scale: str) -> tuple[np.ndarray, str]:
    """Colour values on ``scale`` (NaN stays NaN) and the colour bar's label suffix: ``rank``
    spreads a skewed score evenly (percentile rank in [0, 1]); ``log`` is log10 of the
    positive values (others: no value)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if scale == "rank":
        out = np.full(len(values), np.nan)
        order = np.argsort(values[finite], kind="stable")
        ranks = np.empty(len(order))
        ranks[order] = np.arange(len(order)) / max(len(order) - 1, 1)
        out[finite] = ranks
        return out, " (percentile rank)"
    if scale == "log":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(
                finite & (values > 0), np.log10(np.where(values > 0, values, 1.0)), np.nan
            ), " (log10)"
    if scale != "linear":
        raise ValueError(f"scale must be one of {', '.join(MAP_SCALES)}, got {scale!r}")
    return values, ""


def map_figure(
    xy: np.ndarray,
    color: np.ndarray | None,
    color_name: str | None,
    title: str,
    scale: str = "linear",
) -> bytes:
    """PNG: the 2-D map of a catalogue, coloured by a column (numbers: a colour bar on
    ``scale``). Objects without a value are drawn grey, kept in the axis limits and counted in
    the legend."""
    return _png(map_axes(xy, color, color_name, title, scale))


def map_axes(
    xy: np.ndarray,
    color: np.ndarray | None,
    color_name: str | None,
    title: str,
    scale: str = "linear",
) -> plt.Figure:
    """The figure of :func:`map_figure` (its first axes: the map), for a caller to inspect or save."""
    step = max(1, len(xy) // MAX_POINTS)
    xy = xy[::step]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    if color is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.6)
    else:
        values, suffix = scaled_colours(np.asarray(color, dtype=np.float64)[::step], scale)
        has = np.isfinite(values)
        if (~has).any():
            ax.scatter(
                xy[~has, 0],
                xy[~has, 1],
                s=4,
                alpha=0.6,
                color=NO_VALUE_GREY,
                label=f"no {color_name} value ({int((~has).sum() * step)})",
            )
            ax.legend(loc="best", fontsize=8, markerscale=3)
        if has.any():
            points = ax.scatter(
                xy[has, 0], xy[has, 1], c=values[has], s=4, alpha=0.8, cmap="viridis"
            )
            fig.colorbar(points, ax=ax, label=f"{color_name}{suffix}")
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    fig.tight_layout()
    return fig


MOSAIC_COLUMNS = 6
MOSAIC_PANELS = 25  # the query and 24 neighbours at most


def mosaic_figure(images: Sequence[np.ndarray], titles: Sequence[str], title: str) -> bytes:
    """PNG: colour panels (``[4, H, W]`` flux, the first one's display scale for all, so they
    compare), up to :data:`MOSAIC_PANELS`, each with its title."""
    from astropt.plotting import display_scale, lupton_rgb

    images, titles = list(images)[:MOSAIC_PANELS], list(titles)[:MOSAIC_PANELS]
    cols = min(MOSAIC_COLUMNS, len(images))
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows + 0.4), squeeze=False)
    scale = display_scale(images[0])
    for ax in axes.flat:
        ax.axis("off")
    for ax, flux, name in zip(axes.flat, images, titles, strict=False):
        ax.imshow(lupton_rgb(flux, scale), origin="lower")
        ax.set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)
