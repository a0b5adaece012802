"""Inference on separate (GPU) workers through the ``inference`` Celery queue.

The API validates uploads at the edge (all 413/415/422 rules) and sends the checked cube
(float32 bytes, base64 in JSON: never pickle) with the options; a worker started with

    ASTROPT_BROKER_URL=redis://host:6379/0 ASTROPT_INFERENCE_RESULT_BACKEND=redis://host:6379/1 \
    celery -A worker.inference:inference_app worker -Q inference -P solo

keeps its models loaded between tasks (LRU, as in the API's engine) and answers with the
decoded arrays and metrics. The checkpoint path must be readable by the worker (shared
artifact storage). This app is separate from the training app: it keeps results and its
processes, where training workers ignore results and take one job per process.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

import numpy as np
from celery import Celery

from service.inference.settings import InferenceSettings
from service.settings import get_settings

INFER_TASK = "astropt.infer"


def make_inference_celery(settings: InferenceSettings | None = None) -> Celery:
    settings = settings or InferenceSettings()
    service = get_settings()
    broker = settings.broker_url or service.resolved_broker_url
    app = Celery("astropt-inference", broker=broker, backend=settings.result_backend)
    app.conf.update(
        broker_transport_options={} if settings.broker_url else service.broker_transport_options(),
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.queue,
        task_routes={INFER_TASK: {"queue": settings.queue}},
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=600,
        task_acks_late=False,  # a lost inference is retried by the client, not redelivered
        worker_prefetch_multiplier=4,
        worker_hijack_root_logger=False,
    )
    return app


def pack_array(array: np.ndarray) -> dict[str, Any]:
    array = np.ascontiguousarray(array)
    return {"dtype": array.dtype.str, "shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}


def unpack_array(packed: dict[str, Any] | None) -> np.ndarray | None:
    if packed is None:
        return None
    dtype = np.dtype(packed["dtype"])
    if dtype.kind not in "iuf":
        raise ValueError(f"refusing array dtype {dtype}")
    return np.frombuffer(base64.b64decode(packed["data"]), dtype=dtype).reshape(packed["shape"]).copy()


def pack_reconstruction(recon: Any) -> dict[str, Any]:
    arrays = ("original", "codec", "model", "tokens", "model_tokens")
    return {
        **{name: None if getattr(recon, name) is None else pack_array(getattr(recon, name)) for name in arrays},
        "mode": recon.mode, "bands": list(recon.bands), "token_accuracy": recon.token_accuracy,
        "mse": recon.mse, "codec_mse": recon.codec_mse, "warnings": list(recon.warnings),
    }


def unpack_reconstruction(packed: dict[str, Any]) -> Any:
    from astropt.inference.pipeline import Reconstruction

    arrays = {name: unpack_array(packed[name]) for name in ("original", "codec", "model", "tokens", "model_tokens")}
    return Reconstruction(
        mode=packed["mode"], bands=tuple(packed["bands"]), token_accuracy=packed["token_accuracy"],
        mse=packed["mse"], codec_mse=packed["codec_mse"], warnings=list(packed["warnings"]), **arrays,
    )


def raise_packed_error(error: dict[str, Any]) -> None:
    """Re-raise a worker-side error as the exception type the API maps to a status."""
    from astropt.checkpoints import CheckpointError
    from astropt.codec import CodecError
    from astropt.inference.pipeline import OptionsError
    from astropt.inference.uploads import InputError

    kind, message = error.get("kind"), str(error.get("message", "inference failed"))
    if kind == "codec":
        raise CodecError(message)
    if kind == "checkpoint":
        raise CheckpointError(message)
    if kind == "input":
        raise InputError(int(error.get("status", 422)), message)
    if kind == "options":
        raise OptionsError(message)
    raise RuntimeError(message)


inference_app = make_inference_celery()
_STATE: dict[str, Any] = {}
_LOCK = threading.Lock()


def _worker_cache() -> Any:
    """The worker's model cache and precision, made on first use (torch is imported lazily)."""
    from service.inference.cache import ModelCache
    from service.inference.engine import choose_precision, configure_torch

    if "cache" not in _STATE:
        from astropt.training.runtime import choose_device

        settings = InferenceSettings()
        device = choose_device(settings.device)
        configure_torch(device, settings.torch_threads)
        _STATE["precision"] = choose_precision(settings.precision, device)
        _STATE["cache"] = ModelCache(device, settings.max_models, settings.max_cache_mb * 2**20)
    return _STATE["cache"], _STATE["precision"]


@inference_app.task(name=INFER_TASK)
def infer(request: dict[str, Any]) -> dict[str, Any]:
    """One request: ``kind``, ``checkpoint``, ``flux`` (packed), ``bands``, ``warnings``,
    ``options`` (reconstruct) or ``pooling`` (embed). Errors come back as ``{"error": ...}``."""
    import time
    from pathlib import Path

    from astropt.checkpoints import CheckpointError
    from astropt.codec import CodecError
    from astropt.inference.pipeline import OptionsError, ReconstructOptions, embed, reconstruct
    from astropt.inference.uploads import Cube, InputError

    try:
        with _LOCK:
            cache, precision = _worker_cache()
            start = time.perf_counter()
            loaded = cache.get(Path(request["checkpoint"]))
            cube = Cube(unpack_array(request["flux"]).astype(np.float32), tuple(request["bands"]),
                        list(request.get("warnings", [])))
            if request["kind"] == "embed":
                vectors = embed([cube], loaded.codec, loaded.model, request["pooling"], loaded.codec_info, precision)[0]
                value: Any = {k: v.astype(float).tolist() for k, v in vectors.items()}
            else:
                options = ReconstructOptions(**request["options"])
                model = None if options.mode == "codec" else loaded.model
                recon = reconstruct([cube], loaded.codec, model, options, loaded.codec_info, precision)[0]
                value = pack_reconstruction(recon)
            return {"value": value, "codec_info": loaded.codec_info, "compute_s": time.perf_counter() - start}
    except (CodecError, CheckpointError, InputError, OptionsError) as exc:
        kinds = ((CodecError, "codec"), (CheckpointError, "checkpoint"), (InputError, "input"),
                 (OptionsError, "options"))
        kind = next(name for cls, name in kinds if isinstance(exc, cls))
        return {"error": {"kind": kind, "message": str(exc), "status": getattr(exc, "status", 422)}}
