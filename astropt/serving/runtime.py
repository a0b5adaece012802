"""The inference runtime: device, precision and model cache of one process, and ``run_batch``.

The API's local engine and the Celery inference task both hold one :class:`InferenceRuntime`
and call :meth:`InferenceRuntime.run_batch`; how a batch is computed is written only here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from astropt.checkpoints import CheckpointError
from astropt.finetune.head import load_head
from astropt.finetune.predict import predict
from astropt.inference.cache import ModelCache
from astropt.inference.limits import InputError
from astropt.inference.pipeline import embed, reconstruct
from astropt.science.embedding import (
    EmbedModel,
    EmbedOptions,
    embed_inputs_many,
    load_embed_model,
)
from astropt.serving.wire import InferenceRequest, InferenceResult
from astropt.torch_policy import (
    InferencePrecision,
    choose_device,
    inference_dtype,
    prepare_device,
    set_threads,
)

MAX_RANDOM_INIT_MODELS = 2  # random-init baselines of catalogues kept built


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"
    torch_threads: int | None = None  # None: OMP_NUM_THREADS, else every CPU (one less above 4)
    precision: InferencePrecision = "auto"
    max_models: int = 2
    max_cache_mb: int = 2048


class InferenceRuntime:
    """Not thread-safe: one compute thread (or one task at a time) calls ``run_batch``."""

    def __init__(self, config: RuntimeConfig | None = None):
        self.config = config or RuntimeConfig()
        self.device = choose_device(self.config.device)
        prepare_device(self.device)
        # Above 4 CPUs one is left to upload parsing and PNG rendering beside the compute thread
        # (measured on 2 dedicated cores: p50 100 ms with 2 threads vs 164 ms with 1).
        self.threads = set_threads(self.config.torch_threads, leave_one_above=4)
        self.precision: torch.dtype = inference_dtype(self.config.precision, self.device)
        self.cache = ModelCache(
            self.device,
            self.config.max_models,
            self.config.max_cache_mb * 2**20,
            load_head=load_head,
        )
        self._recipes: dict[tuple[str, int | None], EmbedModel] = {}

    def run_batch(self, requests: Sequence[InferenceRequest]) -> list[InferenceResult]:
        """Compute requests that share kind, checkpoint and mode/pooling, in one model call."""
        if not requests:
            return []
        first = requests[0]
        if any(
            (r.kind, r.checkpoint, r.mode) != (first.kind, first.checkpoint, first.mode)
            for r in requests
        ):
            raise ValueError("one batch must share its kind, checkpoint and mode")
        start = time.perf_counter()
        loaded = self.cache.get(first.checkpoint)
        cubes = [r.cube for r in requests]
        if first.kind == "predict":  # a fine-tuned checkpoint: embedding, then its task head
            values: list = predict(cubes, loaded, self.precision)
        elif first.kind == "embed" and first.catalogue_recipe:
            values = self._catalogue_embed(requests)
        elif loaded.codec is None:  # a patch-token model: no codec in the way
            from astropt.inference.patch_pipeline import embed_patches, reconstruct_patches

            if first.kind == "embed":
                values = embed_patches(
                    cubes, loaded.model, loaded.meta, first.pooling, first.centre
                )
            else:
                assert first.options is not None, "a reconstruction needs its options"
                values = reconstruct_patches(cubes, loaded.model, loaded.meta, first.options)
        elif first.kind == "embed":
            values = embed(
                cubes,
                loaded.codec,
                loaded.model,
                first.pooling,
                loaded.codec_info,
                self.precision,
                first.centre,
            )
        else:
            assert first.options is not None, "a reconstruction needs its options"
            model = None if first.options.mode == "codec" else loaded.model
            values = reconstruct(
                cubes, loaded.codec, model, first.options, loaded.codec_info, self.precision
            )
        compute = time.perf_counter() - start
        return [InferenceResult(value, loaded.codec_info, compute) for value in values]

    def _catalogue_embed(self, requests: Sequence[InferenceRequest]) -> list[dict[str, Any]]:
        """Embeddings exactly as a catalogue's rows were made (its model or random-init
        baseline, layer, pooling; :mod:`astropt.science.embedding`), through this cache."""
        first = requests[0]
        key = (str(first.checkpoint), first.random_init)
        model = self._recipes.get(key) if first.random_init is not None else None
        if model is None:
            model = load_embed_model(
                first.checkpoint, random_init=first.random_init, cache=self.cache
            )
            if first.random_init is not None:  # built, not cached: keep the last few
                self._recipes[key] = model
                while len(self._recipes) > MAX_RANDOM_INIT_MODELS:
                    self._recipes.pop(next(iter(self._recipes)))
        reader = model.reader
        if first.reads is not None and reader.describe() != first.reads:
            raise CheckpointError(
                "the checkpoint now reads its images otherwise (another codec or patch layout) "
                "than when the catalogue was made"
            )
        options = EmbedOptions(
            pool=first.pooling, layer=first.layer, centre=first.centre, batch_size=len(requests)
        )
        flux = np.stack([np.asarray(r.cube.flux, dtype=np.float32) for r in requests])
        try:
            inputs = reader.flux_inputs(flux, first.cube.bands)
        except ValueError as exc:
            raise InputError("invalid", f"this image could not be encoded: {exc}") from exc
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        vectors = embed_inputs_many(model.model, inputs, [options], reader, self.precision)[0]
        return [{first.pooling: vector} for vector in vectors]
