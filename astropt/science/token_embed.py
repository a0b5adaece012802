"""Embedding catalogues from a token data set: the model reads the stored codec tokens, so no
image is decoded and no codec runs (the catalogue's cost is the model's forward pass alone).

The same shards, resume rule and catalogue layout as :func:`astropt.science.embed.embed_catalogues`
(which calls this for a ``tokens`` source); rows keep the data set's order, its scalar columns
ride along, and the surprisal column is written for autoregressive models. No pixels: no
``aperture_flux``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

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
from astropt.science.sources import SourceSpec
from astropt.science.surprisal import SURPRISAL_COLUMN, has_surprisal, token_targets
from astropt.science.token_source import check_model_codec, open_token_source


def embed_token_dataset(
    model: EmbedModel,
    source: SourceSpec,
    outputs: Mapping[str | Path, EmbedOptions],
    *,
    progress: Progress | None,
    should_stop: ShouldStop | None,
    shard_rows: int,
) -> list[EmbedResult]:
    """Catalogues ``outputs`` of ``model`` over the token data set ``source.path``."""
    recipes = list(outputs.values())
    batch_size = min(o.batch_size for o in recipes)
    started = time.perf_counter()
    opened = open_token_source(source)
    try:
        check_model_codec(model.codec, opened, "this model")
        total = len(opened)
        if total == 0:
            raise ValueError("the token data set has no rows to embed")
        check_layers(model, recipes)
        reader = model.reader
        data_source = {**source.describe(), "identity": opened.identity}
        works, first = open_works(model, outputs, data_source, total, shard_rows)
        resumed_from = works[0].span(first).start if first < works[0].n_shards else total
        if progress:
            progress(resumed_from, total)
        surprising = has_surprisal(model.model, reader.tokeniser)
        for index in range(first, works[0].n_shards):
            span = works[0].span(index)
            parts: list[list[np.ndarray]] = [[] for _ in recipes]
            surprisals: list[np.ndarray] = []
            for batch, tokens in opened.batches(batch_size, start=span.start, stop=span.stop):
                if should_stop and should_stop():
                    return cancelled_results(works, outputs, batch.start)
                targets = token_targets(tokens) if surprising else None
                pooled, surprisal = embed_and_surprisal(
                    model.model, reader.token_inputs(tokens), recipes, reader, targets
                )
                for part, values in zip(parts, pooled, strict=True):
                    part.append(values)
                if surprisal is not None:
                    surprisals.append(surprisal)
                if progress:
                    progress(batch.stop, total)
            ids = opened.object_ids[span.start : span.stop]
            columns = {k: v[span.start : span.stop] for k, v in opened.columns.items()}
            if surprisals:
                columns[SURPRISAL_COLUMN] = np.concatenate(surprisals)
            for work, part in zip(works, parts, strict=True):
                work.write(index, ids, {"embedding": np.concatenate(part)}, columns)
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
    finally:
        opened.close()
