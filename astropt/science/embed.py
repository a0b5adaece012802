"""Embedding catalogues: run a model over every galaxy of a data source, write Parquet.

For a job (Celery or otherwise)::

    model = load_embed_model("runs/x/checkpoints/best")          # or random_init=SEED
    result = embed_catalogue(model, SourceSpec("mock", n=600, seed=777), "cat/",
                             EmbedOptions(pool="centre", layer=-1),
                             progress=lambda done, total: ..., should_stop=lambda: False)

``should_stop`` is polled before every batch (a batch of 16 takes about a second on one CPU
thread for the 4-layer mock-small model); when it turns true nothing is left at ``out_dir``,
the result's status is ``"cancelled"``, and the complete shards stay in the hidden work
directory ``.NAME.work`` beside it: the same call later continues from them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from astropt.images import centre_crop
from astropt.science.embedding import (
    EmbedModel,
    EmbedOptions,
    EmbedResult,
    Progress,
    ShouldStop,
    cancelled_results,
    check_layers,
    embed_and_surprisal,
    finish_catalogues,
    open_works,
)
from astropt.science.photometry import aperture_features
from astropt.science.shards import DEFAULT_SHARD_ROWS
from astropt.science.sources import SourceSpec, open_source
from astropt.science.stream_embed import embed_stream
from astropt.science.surprisal import SURPRISAL_COLUMN, has_surprisal, token_targets
from astropt.science.token_cache import TokenShards
from astropt.science.token_embed import embed_token_dataset

DEFAULT_OPTIONS = EmbedOptions()  # frozen: safe as a default


def embed_catalogue(
    model: EmbedModel,
    source: SourceSpec,
    out_dir: str | Path,
    options: EmbedOptions = DEFAULT_OPTIONS,
    *,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
) -> EmbedResult:
    """Embed every galaxy of ``source`` and write the catalogue directory ``out_dir``."""
    return embed_catalogues(
        model,
        source,
        {out_dir: options},
        progress=progress,
        should_stop=should_stop,
        shard_rows=shard_rows,
    )[0]


def embed_catalogues(
    model: EmbedModel,
    source: SourceSpec,
    outputs: Mapping[str | Path, EmbedOptions],
    *,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
) -> list[EmbedResult]:
    """Several catalogues of one model and source (e.g. every pooling and layer) from one
    pass over the data: one forward per batch. Results in the order of ``outputs``.

    Rows go to shards of ``shard_rows`` in each catalogue's work directory
    (:mod:`astropt.science.shards`) as they are embedded: memory does not grow with the
    source, and a rerun after a stop, a cancel or a crash continues after the last complete
    shard (``EmbedResult.resumed_from``), with the same rows as an uninterrupted run.
    """
    if not outputs:
        raise ValueError("no catalogue to write")
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
    if source.kind == "tokens":
        return embed_token_dataset(
            model,
            source,
            outputs,
            progress=progress,
            should_stop=should_stop,
            shard_rows=shard_rows,
        )
    if source.kind == "hf":
        return embed_stream(
            model,
            source,
            outputs,
            progress=progress,
            should_stop=should_stop,
            shard_rows=shard_rows,
        )
    recipes = list(outputs.values())
    batch_size = min(o.batch_size for o in recipes)
    started = time.perf_counter()
    opened = open_source(source)
    total = len(opened)
    if total == 0:
        raise ValueError("the data source has no rows to embed")
    bands = tuple(opened.spec.settings().bands)
    check_layers(model, recipes)
    reader = model.reader
    data_source = {**source.describe(), "identity": opened.identity}
    works, first = open_works(model, outputs, data_source, total, shard_rows)
    resumed_from = works[0].span(first).start if first < works[0].n_shards else total
    if progress:
        progress(resumed_from, total)
    token_store = (
        None
        if model.codec is None
        else TokenShards.for_source(data_source, model.codec.info.fingerprint, bands)
    )
    surprising = has_surprisal(model.model, reader.tokeniser)
    for index in range(first, works[0].n_shards):
        span = works[0].span(index)
        parts: list[list[np.ndarray]] = [[] for _ in recipes]
        apertures: list[np.ndarray] = []
        surprisals: list[np.ndarray] = []
        cached = token_store.load(span) if token_store else None
        encoded: list[np.ndarray] = []
        for batch, flux in opened.batches(batch_size, start=span.start, stop=span.stop):
            if should_stop and should_stop():
                return cancelled_results(works, outputs, batch.start)
            targets = None
            if model.codec is None:
                inputs = reader.flux_inputs(flux, bands)
            else:  # codec tokens, from the token cache when an earlier catalogue of the source wrote them
                if cached is not None:
                    tokens = torch.from_numpy(
                        cached[batch.start - span.start : batch.stop - span.start].astype(np.int64)
                    )
                else:
                    tokens = model.codec.encode(np.ascontiguousarray(centre_crop(flux)), bands)
                    encoded.append(tokens.cpu().numpy())
                inputs = reader.token_inputs(tokens)
                targets = token_targets(tokens) if surprising else None
            pooled, surprisal = embed_and_surprisal(model.model, inputs, recipes, reader, targets)
            for part, values in zip(parts, pooled, strict=True):
                part.append(values)
            if surprisal is not None:
                surprisals.append(surprisal)
            apertures.append(aperture_features(flux))
            if progress:
                progress(batch.stop, total)
        if token_store and cached is None:
            token_store.save(span, np.concatenate(encoded))
        ids = opened.object_ids[span.start : span.stop]
        columns = {k: v[span.start : span.stop] for k, v in opened.columns.items()}
        if surprisals:
            columns[SURPRISAL_COLUMN] = np.concatenate(surprisals)
        aperture = np.concatenate(apertures)
        for work, part in zip(works, parts, strict=True):
            work.write(
                index, ids, {"embedding": np.concatenate(part), "aperture_flux": aperture}, columns
            )
    if should_stop and should_stop():
        return cancelled_results(works, outputs, total)
    return finish_catalogues(
        model,
        works,
        outputs,
        data_source,
        total,
        sorted(opened.columns),
        started=started,
        resumed_from=resumed_from,
        shard_rows=shard_rows,
    )
