"""Linear probes: how much of a label a ridge regression can read off the embeddings.

The recipe (the AstroPT papers' downstream evaluation): standardise the features (fitted on
the training folds only), ridge regression with ``alpha`` (lambda) 100, k-fold
cross-validation (5 by default, shuffled with a fixed seed), R^2 on each held-out fold. Every
feature set of one report uses the same folds, so the numbers compare row for row. An
optional bootstrap over the pooled out-of-fold predictions gives a 95% interval.

:func:`ridge_holdout` is the same regression with alpha chosen on a validation split (what
the fine-tune comparison of :mod:`astropt.finetune` reports as its linear probe).

Baselines: another catalogue of the same objects (typically a same-shape randomly
initialised model, ``astropt embed --random-init``) and the aperture photometry stored in
every catalogue (``aperture_flux``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from astropt.science.catalogue import Catalogue, CatalogueError, read_catalogue

DEFAULT_FOLDS = 5
DEFAULT_ALPHA = 100.0
APERTURE = "aperture_flux"
HOLDOUT_ALPHAS = tuple(10.0**k for k in range(-2, 5))  # ridge_holdout's grid
SHUFFLED = "shuffled_labels"  # the embeddings against permuted labels: R^2 must be ~0
Metric = Literal["r2", "accuracy"]


@dataclass
class LabelScore:
    """One label's cross-validated score. ``metric`` says what the ``r2_*`` fields hold: R^2
    of the ridge probe (numeric labels), or the accuracy of the logistic probe (classes;
    ``chance`` is then the accuracy of always answering the training folds' commonest class)."""

    r2_mean: float
    r2_std: float
    r2_folds: list[float]
    n: int
    ci_low: float | None = None  # bootstrap 95% interval of the pooled out-of-fold score
    ci_high: float | None = None
    metric: Metric = "r2"
    chance: float | None = None
    n_classes: int | None = None


@dataclass
class FeatureScores:
    name: str  # "embedding", "aperture_flux", or a baseline's name
    dim: int
    source: str  # the catalogue directory
    scores: dict[str, LabelScore] = field(default_factory=dict)


@dataclass
class ProbeReport:
    catalogue: str
    n: int
    folds: int
    alpha: float
    seed: int
    bootstrap: int
    labels: list[str]
    features: list[FeatureScores]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeReport:
        features = [
            FeatureScores(
                f["name"],
                f["dim"],
                f["source"],
                {k: LabelScore(**v) for k, v in f["scores"].items()},
            )
            for f in data["features"]
        ]
        return cls(**{**data, "features": features})

    def r2(self, features: str, label: str) -> float:
        return next(f for f in self.features if f.name == features).scores[label].r2_mean

    def table(self) -> str:
        """A plain-text table: one row per label, one column per feature set (mean +- std)."""
        names = [f.name for f in self.features]
        width = max(12, *(len(n) for n in names))
        lines = [f"{'label':<20}" + "".join(f"{n:>{width + 2}}" for n in names)]
        for label in self.labels:
            cells = []
            for f in self.features:
                s = f.scores[label]
                cells.append(f"{s.r2_mean:>{width - 5}.3f}±{s.r2_std:.2f}")
            first = next(iter(f.scores[label] for f in self.features))
            name = label if first.metric == "r2" else f"{label} (acc; chance {first.chance:.2f})"
            lines.append(f"{name:<20}" + "".join(f"{c:>{width + 2}}" for c in cells))
        return "\n".join(lines)


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination (NaN for a constant ``y``)."""
    total = float(np.sum((y - y.mean()) ** 2))
    return float("nan") if total == 0 else 1.0 - float(np.sum((y - pred) ** 2)) / total


_r2 = r2_score


def _standardised_ridge(alpha: float) -> Any:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge(alpha=alpha))


def ridge_holdout(
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    alphas: tuple[float, ...] = HOLDOUT_ALPHAS,
) -> tuple[np.ndarray, float]:
    """Predictions for every row of a standardised ridge regression fitted on the ``train``
    rows, with the alpha of ``alphas`` whose fit has the least mean squared error on the
    ``val`` rows. ``y`` may be ``[N, K]``: the K targets share one alpha (the fine-tune
    comparison's probe: z-scored regression targets and one-hot classes)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)

    def fit(alpha: float) -> Any:
        return _standardised_ridge(alpha).fit(x[train], y[train])

    def val_error(alpha: float) -> float:
        return float(np.mean((fit(alpha).predict(x[val]).reshape(y[val].shape) - y[val]) ** 2))

    alpha = min(alphas, key=val_error)
    # sklearn returns [N] for a one-column y; keep y's shape
    return fit(alpha).predict(x).reshape(len(x), *y.shape[1:]), float(alpha)


def ridge_cv(
    x: np.ndarray,
    y: np.ndarray,
    *,
    folds: int = DEFAULT_FOLDS,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    bootstrap: int = 0,
) -> LabelScore:
    """k-fold R^2 of a standardised ridge regression of ``y`` on ``x`` (rows with a
    non-finite label are left out)."""
    from sklearn.model_selection import KFold

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(y) & np.isfinite(x).all(axis=1)
    x, y = x[keep], y[keep]
    if len(y) < 2 * folds:
        raise ValueError(f"{len(y)} usable rows are too few for {folds}-fold cross-validation")
    pred = np.empty_like(y)
    scores = []
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(x):
        model = _standardised_ridge(alpha).fit(x[train], y[train])
        pred[test] = model.predict(x[test])
        scores.append(_r2(y[test], pred[test]))
    low = high = None
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        draws = [
            _r2(y[i], pred[i]) for i in (rng.integers(0, len(y), len(y)) for _ in range(bootstrap))
        ]
        low, high = (float(v) for v in np.nanpercentile(draws, [2.5, 97.5]))
    return LabelScore(
        float(np.mean(scores)), float(np.std(scores)), [float(s) for s in scores], len(y), low, high
    )


def _standardised_logistic(alpha: float) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # C = 1 / alpha: the same penalty per unit of summed loss as the ridge probe's alpha
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0 / alpha, max_iter=2000))


def class_folds(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k folds of the objects (each object in exactly one test fold), every
    class in every training fold; a class rarer than ``folds`` fails naming it."""
    from sklearn.model_selection import StratifiedKFold

    names, counts = np.unique(y, return_counts=True)
    if len(names) < 2:
        raise ValueError(
            f"one class ({str(names[0])!r}) only: nothing to classify"
            if len(names)
            else "no labelled rows"
        )
    if counts.min() < folds:
        raise ValueError(
            f"class {str(names[counts.argmin()])!r} has {counts.min()} objects, fewer than the "
            f"{folds} folds; merge rare classes or use fewer folds"
        )
    return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def logistic_cv(
    x: np.ndarray,
    y: np.ndarray,
    *,
    folds: int = DEFAULT_FOLDS,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    bootstrap: int = 0,
) -> LabelScore:
    """k-fold accuracy of a standardised logistic regression of the classes ``y`` (``str``;
    ``""``: no label, left out) on ``x``, with the majority-class accuracy as ``chance``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=str)
    keep = (y != "") & np.isfinite(x).all(axis=1)
    x, y = x[keep], y[keep]
    pred = np.empty_like(y)
    scores, chance = [], []
    for train, test in class_folds(y, folds, seed):
        pred[test] = _standardised_logistic(alpha).fit(x[train], y[train]).predict(x[test])
        scores.append(float(np.mean(pred[test] == y[test])))
        names, counts = np.unique(y[train], return_counts=True)
        chance.append(float(np.mean(y[test] == names[counts.argmax()])))
    low = high = None
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        hits = pred == y
        draws = [float(hits[rng.integers(0, len(y), len(y))].mean()) for _ in range(bootstrap)]
        low, high = (float(v) for v in np.percentile(draws, [2.5, 97.5]))
    return LabelScore(
        float(np.mean(scores)),
        float(np.std(scores)),
        scores,
        len(y),
        low,
        high,
        metric="accuracy",
        chance=float(np.mean(chance)),
        n_classes=len(np.unique(y)),
    )


def _aligned(base: Catalogue, other: Catalogue, what: str) -> np.ndarray:
    """Row order of ``other`` matching ``base``'s object ids (both must hold the same objects)."""
    where = {oid: i for i, oid in enumerate(other.object_ids)}
    missing = [oid for oid in base.object_ids if oid not in where]
    if missing or len(other) != len(base):
        raise CatalogueError(
            f"{what} does not hold the same objects as the catalogue ({len(missing)} missing)"
        )
    return np.array([where[oid] for oid in base.object_ids])


def probe_catalogue(
    catalogue: str | Path | Catalogue,
    labels: list[str],
    *,
    baselines: dict[str, str | Path | Catalogue] | None = None,
    aperture: bool = True,
    folds: int = DEFAULT_FOLDS,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    bootstrap: int = 0,
    shuffled: bool = False,
    categorical: list[str] | tuple[str, ...] = (),
) -> ProbeReport:
    """Probe ``labels`` (columns of the catalogue) from its embeddings, from each baseline
    catalogue's embeddings (rows matched by object id) and from its aperture photometry (when
    ``aperture`` and the catalogue has it). Numeric labels get the ridge probe (R^2); text and
    boolean labels, and the numeric ones named in ``categorical`` (integer class codes), the
    logistic probe (accuracy). ``shuffled`` adds the control ``shuffled_labels``: the
    embeddings against each label permuted across objects (seeded), which a sound probe scores
    ~0 (R^2) or at chance (accuracy)."""
    base = catalogue if isinstance(catalogue, Catalogue) else read_catalogue(catalogue)
    where = str(catalogue) if not isinstance(catalogue, Catalogue) else "(in memory)"
    if not labels:
        raise ValueError("name at least one label to probe")
    stray = sorted(set(categorical) - set(labels))
    if stray:
        raise ValueError(f"categorical names {stray}, which are not among the labels probed")
    targets = {
        name: base.classes(name)
        if name in categorical or base.is_categorical(name)
        else base.label(name)
        for name in labels
    }
    sets: list[tuple[str, np.ndarray, str]] = [("embedding", base.embeddings, where)]
    for name, other in (baselines or {}).items():
        cat = other if isinstance(other, Catalogue) else read_catalogue(other)
        sets.append((name, cat.embeddings[_aligned(base, cat, f"baseline {name!r}")], str(other)))
    if aperture and APERTURE in base.columns:
        sets.append((APERTURE, base.features(APERTURE), where))
    results = []
    for name, x, source in sets:
        scores = {
            label: score_label(x, y, folds=folds, alpha=alpha, seed=seed, bootstrap=bootstrap)
            for label, y in targets.items()
        }
        results.append(FeatureScores(name, int(x.shape[1]), source, scores))
    if shuffled:
        rng = np.random.default_rng(seed)
        scores = {
            label: score_label(
                base.embeddings,
                rng.permutation(y),
                folds=folds,
                alpha=alpha,
                seed=seed,
                bootstrap=bootstrap,
            )
            for label, y in targets.items()
        }
        results.append(FeatureScores(SHUFFLED, int(base.embeddings.shape[1]), where, scores))
    return ProbeReport(where, len(base), folds, alpha, seed, bootstrap, list(labels), results)


def score_label(x: np.ndarray, y: np.ndarray, **kwargs: Any) -> LabelScore:
    """The ridge probe of a numeric label, the logistic probe of class names (``str``)."""
    return logistic_cv(x, y, **kwargs) if y.dtype.kind in "US" else ridge_cv(x, y, **kwargs)
