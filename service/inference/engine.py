"""The serving engine: one compute thread, dynamic micro-batching, LRU model cache.

Requests are queued from the event loop (:meth:`InferenceEngine.submit` returns an awaitable)
and executed by a single compute thread, so the event loop never runs model code and torch's
intra-op threads are not oversubscribed by concurrent requests. The thread takes the oldest
request, waits up to ``max_wait_ms`` for more requests it can run in the same call (same
checkpoint, kind, mode and band set) and runs up to ``max_batch_size`` of them together;
under load, requests pile up while a batch runs, so batches fill without waiting.

``complete`` requests are never batched: sampling shares one random generator per call, and a
seeded completion must not depend on which other requests happened to share its batch.

GPU routing: with ``backend="celery"`` each request is sent, already validated, to the
``inference`` Celery queue instead (in its wire form, ``astropt.serving.wire``); the workers
there run the same ``InferenceRuntime.run_batch`` with their own model cache. Remote requests
are not micro-batched across requests (one task, one image).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import threading
import time
from collections import Counter as CountMap
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from astropt.inference.errors import EngineBusy, error_kind
from astropt.serving.runtime import InferenceRuntime
from astropt.serving.wire import InferenceRequest, reply_from_wire
from state.settings import InferenceSettings

log = logging.getLogger(__name__)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256)


@dataclass(eq=False)  # queued requests are distinct by identity
class Work(InferenceRequest):
    """A request waiting in the engine's queue."""

    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    serial: int = 0
    submitted_at: float = field(default_factory=time.perf_counter)

    @property
    def batch_key(self) -> BatchKey:
        return BatchKey(
            self.kind,
            str(self.checkpoint),
            self.mode,
            self.cube.bands,
            self.serial if self.mode == "complete" else None,
        )


@dataclass(frozen=True)
class BatchKey:
    """Requests with equal keys may share a batch; ``alone`` keeps a request to itself."""

    kind: str
    checkpoint: str
    mode: str
    bands: tuple[str, ...]
    alone: int | None


@dataclass
class BatchResult:
    value: Any
    batch_size: int
    codec_info: dict[str, Any]
    queued_s: float  # from submit until its batch started
    compute_s: float  # the batch's model + codec time


class InferenceEngine:
    def __init__(
        self, settings: InferenceSettings | None = None, registry: CollectorRegistry | None = None
    ):
        self.settings = settings or InferenceSettings()
        self.runtime = InferenceRuntime(self.settings.runtime_config())
        self.device, self.threads, self.precision = (
            self.runtime.device,
            self.runtime.threads,
            self.runtime.precision,
        )
        self.cache = self.runtime.cache
        self.max_batch_size = self.settings.max_batch_size or (
            4 if self.device.type == "cpu" else 32
        )
        self.batch_sizes: CountMap[int] = CountMap()  # batch size -> batches run (for tests)
        self._pending: list[Work] = []
        self._cond = threading.Condition()
        self._serials = itertools.count(1)
        self._queued_bytes = 0  # image bytes of the pending requests
        self._stop = False
        self._thread: threading.Thread | None = None
        self._celery: Any = None
        registry = registry or CollectorRegistry()
        self.m_batch = Histogram(
            "astropt_inference_batch_size",
            "Images per inference batch",
            ["kind"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.m_seconds = Histogram(
            "astropt_inference_batch_seconds",
            "Compute time per inference batch",
            ["kind"],
            registry=registry,
        )
        self.m_requests = Counter(
            "astropt_inference_requests",
            "Inference requests by outcome",
            ["kind", "outcome"],
            registry=registry,
        )
        self.m_queue = Gauge(
            "astropt_inference_queue", "Requests waiting for the engine", registry=registry
        )
        self.m_queue.set_function(lambda: len(self._pending))

    # -- event-loop side -------------------------------------------------------------------
    async def submit(self, work: Work) -> BatchResult:
        """Queue ``work`` and wait for its result (raises what the computation raised)."""
        if self.settings.backend == "celery":
            return await self._submit_remote(work)
        self._ensure_thread()
        work.serial = next(self._serials)
        with self._cond:
            if len(self._pending) >= self.settings.max_queue:
                self.m_requests.labels(work.kind, "busy").inc()
                raise EngineBusy(
                    f"the inference queue is full ({self.settings.max_queue} waiting); retry shortly"
                )
            max_bytes = int(self.settings.max_queued_mb * 2**20)
            if self._queued_bytes + work.cube.flux.nbytes > max_bytes:
                self.m_requests.labels(work.kind, "busy").inc()
                raise EngineBusy(
                    f"the inference queue holds {self._queued_bytes} bytes of images; "
                    f"this one ({work.cube.flux.nbytes} bytes) would pass the limit "
                    f"({max_bytes} bytes): retry shortly"
                )
            self._pending.append(work)
            self._queued_bytes += work.cube.flux.nbytes
            self._cond.notify_all()
        try:
            result = await asyncio.wait_for(
                asyncio.wrap_future(work.future), timeout=self.settings.request_timeout_s
            )
        except TimeoutError as exc:
            work.future.cancel()
            self.m_requests.labels(work.kind, "timeout").inc()
            raise EngineBusy(
                f"the request waited more than {self.settings.request_timeout_s:.0f} s for the "
                "inference engine; it is overloaded: retry later",
                retry_after_s=10.0,
            ) from exc
        except BaseException:
            self.m_requests.labels(work.kind, "error").inc()
            raise
        self.m_requests.labels(work.kind, "ok").inc()
        return result

    async def _submit_remote(self, work: Work) -> BatchResult:
        """Send ``work`` to the Celery inference queue and wait for a worker's answer."""
        from celery.exceptions import TimeoutError as CeleryTimeout

        from broker import make_inference_app, send_inference
        from state.settings import get_settings

        if self._celery is None:
            broker = self.settings.broker(get_settings())
            self._celery = make_inference_app(
                broker, self.settings.queue, self.settings.result_backend
            )
        timeout = self.settings.request_timeout_s
        pending = send_inference(self._celery, work.to_wire(), self.settings.queue)
        loop = asyncio.get_running_loop()
        try:
            reply = await loop.run_in_executor(
                None, lambda: pending.get(timeout=timeout, propagate=True)
            )
        except CeleryTimeout as exc:
            pending.revoke()
            self.m_requests.labels(work.kind, "timeout").inc()
            raise EngineBusy(
                f"no inference worker answered within {timeout:.0f} s on queue {self.settings.queue!r}; "
                "start one: celery -A worker.inference:inference_app worker -Q inference"
            ) from exc
        try:
            result = reply_from_wire(reply, work.kind)
        except BaseException:
            self.m_requests.labels(work.kind, "error").inc()
            raise
        self.batch_sizes[1] += 1
        self.m_batch.labels(work.kind).observe(1)
        self.m_requests.labels(work.kind, "ok").inc()
        queued = time.perf_counter() - work.submitted_at - result.compute_s
        return BatchResult(result.value, 1, result.codec_info, queued, result.compute_s)

    def _ensure_thread(self) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._stop = False
                self._thread = threading.Thread(
                    target=self._loop, name="astropt-inference", daemon=True
                )
                self._thread.start()

    def close(self, timeout: float = 120.0) -> None:
        """Cancel what waits and let the batch being computed finish (up to ``timeout``): a
        compute thread still inside torch when the interpreter exits aborts the process."""
        with self._cond:
            self._stop = True
            for work in self._pending:
                work.future.cancel()
            self._pending.clear()
            self._queued_bytes = 0
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        return {
            "device": str(self.device),
            "torch_threads": self.threads,
            "precision": str(self.precision).removeprefix("torch."),
            "max_batch_size": self.max_batch_size,
            "batch_sizes": dict(sorted(self.batch_sizes.items())),
            "models_loaded": len(self.cache),
            "model_loads": self.cache.loads,
            "evictions": self.cache.evictions,
            "queued": len(self._pending),
            "queued_bytes": self._queued_bytes,
        }

    # -- compute-thread side ---------------------------------------------------------------
    def _next_batch(self) -> list[Work] | None:
        with self._cond:
            while not self._pending and not self._stop:
                self._cond.wait()
            if self._stop:
                return None
            # Read once a request is here, so a changed window applies to the very next batch.
            max_batch, wait = self.max_batch_size, self.settings.max_wait_ms / 1000.0
            key = self._pending[0].batch_key
            deadline = time.monotonic() + wait
            while True:
                same = [w for w in self._pending if w.batch_key == key]
                remaining = deadline - time.monotonic()
                if len(same) >= max_batch or remaining <= 0 or key.alone is not None:
                    break
                self._cond.wait(remaining)
            batch = same[:max_batch]
            for work in batch:
                self._pending.remove(work)
                self._queued_bytes -= work.cube.flux.nbytes
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            live = [w for w in batch if w.future.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                self._run(live)
            except BaseException as exc:  # keep the thread alive whatever a batch does
                expected = error_kind(exc) is not None  # request errors explain themselves
                log.log(
                    logging.INFO if expected else logging.ERROR,
                    "inference batch failed: %s",
                    exc,
                    exc_info=not expected,
                )
                for work in live:
                    if not work.future.done():
                        work.future.set_exception(exc)

    def _run(self, batch: list[Work]) -> None:
        start = time.perf_counter()
        results = self.runtime.run_batch(batch)
        kind = batch[0].kind
        self.batch_sizes[len(batch)] += 1
        self.m_batch.labels(kind).observe(len(batch))
        self.m_seconds.labels(kind).observe(results[0].compute_s)
        for work, result in zip(batch, results, strict=True):
            queued = start - work.submitted_at
            work.future.set_result(
                BatchResult(result.value, len(batch), result.codec_info, queued, result.compute_s)
            )


def ensure_engine(app: Any) -> InferenceEngine:
    """The app's one engine, built from ``app.state.inference_settings`` on first need (the
    lifespan builds it at start-up; a test may have put its own in ``app.state`` before)."""
    state = app.state
    engine = getattr(state, "inference_engine", None)
    if engine is None:
        settings = getattr(state, "inference_settings", None) or InferenceSettings()
        engine = InferenceEngine(
            settings, getattr(getattr(state, "metrics", None), "registry", None)
        )
        state.inference_engine = engine
    return engine
