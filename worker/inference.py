"""Inference on separate (GPU) workers through the ``inference`` Celery queue: a thin adapter.

The API validates uploads at the edge (all 413/415/422 rules) and sends the checked cube in
its wire form (``astropt.serving.wire``: JSON, never pickle); a worker started with

    ASTROPT_BROKER_URL=redis://host:6379/0 ASTROPT_INFERENCE_RESULT_BACKEND=redis://host:6379/1 \
    celery -A worker.inference:inference_app worker -Q inference -P solo

runs it through the same ``InferenceRuntime.run_batch`` as the API's local engine, keeping its
models loaded between tasks, and answers with the result's wire form or a typed error payload.
The checkpoint path must be readable by the worker (shared artifact storage).
"""

from __future__ import annotations

import threading
from typing import Any

from broker import INFER_TASK, make_inference_app
from state.settings import get_inference_settings, get_settings

_settings = get_inference_settings()
inference_app = make_inference_app(
    _settings.broker(get_settings()), _settings.queue, _settings.result_backend
)
_runtime: Any = None
_LOCK = threading.Lock()


@inference_app.task(name=INFER_TASK)
def infer(request: dict[str, Any]) -> dict[str, Any]:
    """One request in wire form; expected errors come back as ``{"error": payload}``."""
    global _runtime
    # torch is imported here, in the process that computes, not when the app is loaded.
    from astropt.inference.errors import REQUEST_ERRORS, ErrorPayload
    from astropt.serving.runtime import InferenceRuntime
    from astropt.serving.wire import InferenceRequest, reply_to_wire

    with _LOCK:
        try:
            if _runtime is None:
                _runtime = InferenceRuntime(_settings.runtime_config())
            return reply_to_wire(_runtime.run_batch([InferenceRequest.from_wire(request)])[0])
        except REQUEST_ERRORS as exc:
            return reply_to_wire(ErrorPayload.of(exc))
