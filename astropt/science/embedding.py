"""Embedding a galaxy with a model: the options, the loaded model, and the pieces every
catalogue writer shares (finite sources: :mod:`astropt.science.embed`; streamed hf sources:
:mod:`astropt.science.stream_embed`): one forward pass pooled several ways, the shards'
resume key, assembling the finished catalogues, the result of a cancelled run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from astropt.codec import CodecHandle
from astropt.constants import DEFAULT_BANDS
from astropt.inference.cache import ModelCache
from astropt.model import GPT, GPTConfig
from astropt.pooling import DEFAULT_CENTRE, DEFAULT_POOL, check_pool, pool_hidden
from astropt.science.catalogue import (
    CatalogueError,
    check_target,
    staged_directory,
    write_manifest,
)
from astropt.science.photometry import APERTURE_RADII_PX
from astropt.science.readers import ModelReader
from astropt.science.shards import ShardDir, file_signature, work_dir_for
from astropt.torch_policy import autocast

Progress = Callable[[int, int], None]
ShouldStop = Callable[[], bool]


@dataclass(frozen=True)
class EmbedOptions:
    pool: str = DEFAULT_POOL  # one of astropt.pooling.POOLS
    layer: int = -1  # block whose output is pooled (-1: the last, after ln_f)
    centre: int = DEFAULT_CENTRE  # k of the k x k centre pool
    batch_size: int = 16

    def __post_init__(self) -> None:
        check_pool(self.pool, self.centre)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class EmbedModel:
    """A model with what it reads (codec tokens or flux patches), and what to call it in a manifest."""

    model: GPT
    codec: CodecHandle | None  # None: a patch-token model
    meta: dict[str, Any]
    description: dict[str, Any]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @cached_property
    def reader(self) -> ModelReader:
        return ModelReader.for_model(self.meta, self.codec)

    def codec_info(self) -> dict[str, Any] | None:
        return None if self.codec is None else self.codec.info.to_dict()


@dataclass
class EmbedResult:
    status: str  # "completed" | "cancelled"
    out_dir: str | None  # the catalogue directory (None when cancelled)
    count: int  # rows written (completed) or embedded before the stop (cancelled)
    manifest: dict[str, Any] = field(default_factory=dict)
    resumed_from: int = 0  # rows found in complete shards of an earlier run
    shards_kept: int = 0  # cancelled: complete shards left in the work directory for a rerun

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_embed_model(
    checkpoint: str | Path,
    *,
    device: str | torch.device = "cpu",
    random_init: int | None = None,
    cache: ModelCache | None = None,
) -> EmbedModel:
    """A checkpoint's model and codec (the inference cache's loading and codec check).

    ``random_init=SEED``: a model of the same shape, freshly initialised from ``SEED``
    (the baseline a trained model's embeddings must beat), with the checkpoint's codec.
    ``cache``: a process's :class:`ModelCache` to load through (and keep the model in); its
    device then applies.
    """
    checkpoint = Path(checkpoint)
    cache = cache or ModelCache(torch.device(device), max_models=1, max_bytes=2**62)
    device = cache.device
    loaded = cache.get(checkpoint)
    description: dict[str, Any] = {"kind": "checkpoint", "checkpoint": str(checkpoint.resolve())}
    model = loaded.model
    if random_init is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_init)
            model = GPT(GPTConfig.from_dict(loaded.meta["model_args"])).to(device).eval()
        description = {
            "kind": "random-init",
            "like": str(checkpoint.resolve()),
            "seed": random_init,
        }
    description["model_args"] = loaded.meta["model_args"]
    return EmbedModel(model, loaded.codec, loaded.meta, description)


def embed_inputs_many(
    model: GPT,
    inputs: dict[str, torch.Tensor],
    options: Sequence[EmbedOptions],
    reader: ModelReader,
    dtype: torch.dtype | None = None,
) -> list[np.ndarray]:
    """Model inputs (:class:`ModelReader`) -> one float32 ``[B, C]`` per options, from one
    forward pass: block ``layer``'s hidden states pooled as each options says."""
    return embed_and_surprisal(model, inputs, options, reader, None, dtype)[0]


def embed_and_surprisal(
    model: GPT,
    inputs: dict[str, torch.Tensor],
    options: Sequence[EmbedOptions],
    reader: ModelReader,
    targets: torch.Tensor | None,
    dtype: torch.dtype | None = None,
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """:func:`embed_inputs_many` and, given the next-token ``targets`` ``Long[B, T]`` of an
    AION-token model, each galaxy's surprisal (:func:`astropt.science.surprisal.surprisal`)
    from the same forward pass (all blocks run then, whatever layer is pooled)."""
    from astropt.science.surprisal import surprisal_of_states

    device = next(model.parameters()).device
    n_layer = len(cast(torch.nn.ModuleList, model.transformer.h))
    for o in options:
        if not -n_layer <= o.layer < n_layer:
            raise ValueError(
                f"layer must be in [{-n_layer}, {n_layer - 1}] for this model, got {o.layer}"
            )
    inputs = {k: v.to(device) for k, v in inputs.items()}
    upto = n_layer - 1 if targets is not None else max(o.layer % n_layer for o in options)
    with torch.inference_mode(), autocast(device, dtype):
        states, _ = model.layer_states(inputs, upto=upto)
        length = states[0].shape[1]
        pooled = [
            pool_hidden(
                states[o.layer % n_layer],
                o.pool,
                o.centre,
                reader.centre(o.centre, length) if o.pool == "centre" else None,
            )
            for o in options
        ]
        surprisal = (
            None if targets is None else surprisal_of_states(model, states[-1], targets.to(device))
        )
    return [p.float().cpu().numpy() for p in pooled], surprisal


def embed_tokens(
    model: GPT, tokens: torch.Tensor, options: EmbedOptions, dtype: torch.dtype | None = None
) -> np.ndarray:
    """Codec tokens ``Long[B, 576]`` of an AION-token model -> float32 ``[B, C]``: the model
    reads positions 0..574 exactly as in training."""
    reader = ModelReader("aion")
    return embed_inputs_many(model, reader.token_inputs(tokens), [options], reader, dtype)[0]


def embed_flux(
    em: EmbedModel, flux: np.ndarray, options: EmbedOptions, bands: tuple[str, ...] = DEFAULT_BANDS
) -> np.ndarray:
    """Flux ``[B, 4, H, W]`` (nanomaggies) -> embeddings float32 ``[B, C]``."""
    reader = em.reader
    return embed_inputs_many(em.model, reader.flux_inputs(flux, bands), [options], reader)[0]


def finish_catalogues(
    model: EmbedModel,
    works: list[ShardDir],
    outputs: Mapping[str | Path, EmbedOptions],
    data_source: dict[str, Any],
    total: int,
    columns: list[str],
    *,
    started: float,
    resumed_from: int,
    shard_rows: int,
) -> list[EmbedResult]:
    """Every shard is written: assemble each catalogue (manifest last), remove its work dir."""
    seconds = round(time.perf_counter() - started, 3)
    reader = model.reader
    results = []
    for (out_dir, options), work in zip(outputs.items(), works, strict=True):
        manifest = {
            "model": model.description,
            "checkpoint": model.description.get("checkpoint") or model.description.get("like"),
            "codec": model.codec_info(),
            "inputs": reader.describe(),
            "data_source": data_source,
            "pooling": options.pool,
            "centre": options.centre if options.pool == "centre" else None,
            "layer": options.layer,
            "n_layer": len(cast(torch.nn.ModuleList, model.model.transformer.h)),
            "count": total,
            "embedding_dim": int(model.model.config.n_embd),
            "aperture_radii_px": list(APERTURE_RADII_PX),
            "columns": columns,
            "surprisal_column": _surprisal_column(model),
            "seconds": seconds,
            "resumed_from": resumed_from,
            "shard_rows": shard_rows,
        }
        with staged_directory(out_dir) as staging:
            rows = work.assemble(staging)
            if rows != total:
                raise CatalogueError(f"the shards of {out_dir} hold {rows} rows, expected {total}")
            write_manifest(staging, manifest)
        work.remove()
        results.append(
            EmbedResult(
                "completed",
                str(Path(out_dir).expanduser().resolve()),
                total,
                manifest,
                resumed_from,
            )
        )
    return results


def check_layers(model: EmbedModel, recipes: Sequence[EmbedOptions]) -> None:
    n_layer = len(cast(torch.nn.ModuleList, model.model.transformer.h))
    for o in recipes:
        if not -n_layer <= o.layer < n_layer:
            raise ValueError(
                f"layer must be in [{-n_layer}, {n_layer - 1}] for this model, got {o.layer}"
            )


def work_key(
    model: EmbedModel, data_source: dict[str, Any], options: EmbedOptions
) -> dict[str, Any]:
    """Everything a row of a shard depends on (``batch_size`` only changes the batching)."""
    checkpoint = model.description.get("checkpoint") or model.description.get("like")
    return {
        "model": model.description,
        "weights": file_signature(checkpoint) if checkpoint else [],
        "inputs": model.reader.describe(),
        "data_source": data_source,
        "pool": options.pool,
        "layer": options.layer,
        "centre": options.centre if options.pool == "centre" else None,
        "surprisal": _surprisal_column(model),
    }


def _surprisal_column(model: EmbedModel) -> str | None:
    from astropt.science.surprisal import SURPRISAL_COLUMN, has_surprisal

    return (
        SURPRISAL_COLUMN
        if model.codec is not None and has_surprisal(model.model, model.reader.tokeniser)
        else None
    )


def open_works(
    model: EmbedModel,
    outputs: Mapping[str | Path, EmbedOptions],
    data_source: dict[str, Any],
    total: int,
    shard_rows: int,
) -> tuple[list[ShardDir], int]:
    """Each catalogue's work directory of shards (checked targets), and the first shard that
    is not complete in all of them (a rerun continues there)."""
    works = [
        ShardDir(work_dir_for(out), work_key(model, data_source, o), total, shard_rows)
        for out, o in outputs.items()
    ]
    for out in outputs:
        check_target(out)
    return works, min(work.open() for work in works)


def cancelled_results(
    works: list[ShardDir], outputs: Mapping[str | Path, EmbedOptions], count: int
) -> list[EmbedResult]:
    """Stopped: no catalogue is written; complete shards stay for a rerun (none: nothing stays)."""
    results = []
    for work in works:
        done = work.complete_shards()
        if done == 0:
            work.remove()
        results.append(EmbedResult("cancelled", None, count, {}, resumed_from=0, shards_kept=done))
    return results
