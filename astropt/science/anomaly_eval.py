"""Judging anomaly scores on planted anomalies (``benchmarks/bench_anomaly.py`` and the tests).

A pool of normal mock galaxies and a pool of planted anomalies (:mod:`astropt.data.anomalies`)
are embedded once, with each galaxy's surprisal. A *trial* mixes all the normal galaxies with
a random draw of anomalies (about 2% of the total, from a given set of kinds), scores every
object with each method, and counts the planted anomalies in the top ``k = 2 x planted``.
Recall per kind is the share of that kind's planted anomalies, over all trials, that made
the top ``k``; chance is ``k / N``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from astropt.constants import DEFAULT_BANDS
from astropt.science.anomaly import anomaly_scores
from astropt.science.embedding import EmbedModel, EmbedOptions, embed_and_surprisal
from astropt.science.surprisal import flux_inputs_and_targets


@dataclass
class Embedded:
    embeddings: np.ndarray  # float32 [N, D]
    surprisal: np.ndarray | None  # float32 [N]
    kinds: np.ndarray  # str [N]: "normal" or the anomaly kind


DEFAULT_OPTIONS = EmbedOptions()  # frozen: safe as a default


def embed_fluxes(
    model: EmbedModel,
    fluxes: Sequence[np.ndarray],
    kinds: Sequence[str],
    options: EmbedOptions = DEFAULT_OPTIONS,
    bands: tuple[str, ...] = DEFAULT_BANDS,
) -> Embedded:
    """Embeddings and surprisals of flux cubes ``[4, H, W]`` exactly as an embed job makes them."""
    parts, surprisals = [], []
    for start in range(0, len(fluxes), options.batch_size):
        flux = np.stack(fluxes[start : start + options.batch_size]).astype(np.float32)
        inputs, targets = flux_inputs_and_targets(model, flux, bands)
        pooled, surprisal = embed_and_surprisal(
            model.model, inputs, [options], model.reader, targets
        )
        parts.append(pooled[0])
        if surprisal is not None:
            surprisals.append(surprisal)
    return Embedded(
        np.concatenate(parts),
        np.concatenate(surprisals) if surprisals else None,
        np.asarray(kinds, dtype=str),
    )


@dataclass
class Recall:
    """Planted anomalies found in the top k, per kind, over every trial of one method."""

    found: dict[str, int] = field(default_factory=dict)
    planted: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, hit: bool) -> None:
        self.planted[kind] = self.planted.get(kind, 0) + 1
        self.found[kind] = self.found.get(kind, 0) + int(hit)

    def of(self, kinds: Sequence[str] | None = None) -> float:
        kinds = list(self.planted) if kinds is None else [k for k in kinds if k in self.planted]
        total = sum(self.planted[k] for k in kinds)
        return sum(self.found[k] for k in kinds) / total if total else float("nan")


def top_k_hits(scores: np.ndarray, is_anomaly: np.ndarray) -> np.ndarray:
    """Bool ``[N]``: planted anomalies among the ``2 x planted`` highest scores."""
    k = 2 * int(is_anomaly.sum())
    top = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:k]
    hit = np.zeros(len(scores), dtype=bool)
    hit[top] = True
    return hit & is_anomaly


def run_trials(
    normal: Embedded,
    anomalies: Embedded,
    methods: Sequence[str],
    kinds: Sequence[str],
    *,
    per_trial: int,
    trials: int,
    seed: int = 0,
    k: int = 10,
) -> dict[str, Recall]:
    """``trials`` draws of ``per_trial`` anomalies of ``kinds`` (without replacement within a
    draw) planted among all of ``normal``; recall in the top ``2 x per_trial`` per method."""
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(np.isin(anomalies.kinds, list(kinds)))
    if len(pool) < per_trial:
        raise ValueError(
            f"{len(pool)} anomalies of kinds {list(kinds)}, fewer than {per_trial} per trial"
        )
    results = {m: Recall() for m in methods}
    n_normal = len(normal.kinds)
    for _ in range(trials):
        pick = rng.choice(pool, per_trial, replace=False)
        x = np.concatenate([normal.embeddings, anomalies.embeddings[pick]])
        s = None
        if normal.surprisal is not None and anomalies.surprisal is not None:
            s = np.concatenate([normal.surprisal, anomalies.surprisal[pick]])
        planted = np.zeros(len(x), dtype=bool)
        planted[n_normal:] = True
        for method in methods:
            hits = top_k_hits(anomaly_scores(method, x, s, k=k), planted)
            for j, row in enumerate(pick):
                results[method].add(str(anomalies.kinds[row]), bool(hits[n_normal + j]))
    return results
