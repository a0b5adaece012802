"""The inference runtime: device, precision and model cache of one process, and ``run_batch``.

The API's local engine and the Celery inference task both hold one :class:`InferenceRuntime`
and call :meth:`InferenceRuntime.run_batch`; how a batch is computed is written only here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from astropt.finetune.head import load_head
from astropt.finetune.predict import predict
from astropt.inference.cache import ModelCache
from astropt.inference.pipeline import embed, reconstruct
from astropt.serving.wire import InferenceRequest, InferenceResult
from astropt.torch_policy import (
    InferencePrecision,
    choose_device,
    inference_dtype,
    prepare_device,
    set_threads,
)


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
