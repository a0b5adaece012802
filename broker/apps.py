"""The two Celery apps (training, inference) and the helpers that publish to them.

Training: one job per worker process, late acks, no results (the store holds the outcome).
Inference: results kept (the API waits for them), several tasks per worker, early acks (a
lost inference is retried by the client, not redelivered).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from broker.fifo_filesystem import TRANSPORT as FIFO_FILESYSTEM
from broker.names import INFER_TASK, TRAIN_TASK


@dataclass(frozen=True)
class BrokerConfig:
    """Where messages go: a broker URL and its transport options (from the service settings)."""

    url: str
    transport_options: dict[str, Any] = field(default_factory=dict)
    timeout_seconds: float = 5.0  # connect, read and publish bound of every broker call

    @property
    def transport(self) -> str | None:
        """The FIFO filesystem transport for ``filesystem://``; the URL's own otherwise."""
        return FIFO_FILESYSTEM if self.url.startswith("filesystem") else None

    def celery_conf(self) -> dict[str, Any]:
        """Settings both apps share: the transport and timeouts on every broker call."""
        options = dict(self.transport_options)
        if self.url.startswith(("redis", "rediss")):
            options.setdefault("socket_timeout", self.timeout_seconds)
            options.setdefault("socket_connect_timeout", self.timeout_seconds)
        return {
            "broker_transport": self.transport,
            "broker_transport_options": options,
            "broker_connection_timeout": self.timeout_seconds,
            # one retry of a publish, each bounded by the socket timeouts above
            "task_publish_retry_policy": {
                "max_retries": 1,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.2,
            },
        }


def make_train_app(broker: BrokerConfig, queue: str) -> Celery:
    app = Celery("astropt", broker=broker.url)
    app.conf.update(
        **broker.celery_conf(),
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_acks_late=True,  # a job is acknowledged only once it has finished
        task_reject_on_worker_lost=True,  # a killed pool process puts the job back on the queue
        task_default_queue=queue,
        task_routes={TRAIN_TASK: {"queue": queue}},
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,  # never hold a second job while one trains
        worker_concurrency=1,  # one job per worker: one worker per GPU
        worker_max_tasks_per_child=1,  # a fresh process (and CUDA context) for every job
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def enqueue_training(app: Celery, job_id: str, queue: str) -> None:
    app.send_task(TRAIN_TASK, args=[job_id], queue=queue)


def make_inference_app(broker: BrokerConfig, queue: str, result_backend: str | None) -> Celery:
    app = Celery("astropt-inference", broker=broker.url, backend=result_backend)
    app.conf.update(
        **broker.celery_conf(),
        broker_connection_retry_on_startup=True,
        task_default_queue=queue,
        task_routes={INFER_TASK: {"queue": queue}},
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=600,
        task_acks_late=False,  # a lost inference is retried by the client, not redelivered
        worker_prefetch_multiplier=4,
        worker_hijack_root_logger=False,
    )
    return app


def send_inference(app: Celery, request: dict[str, Any], queue: str) -> AsyncResult:
    """Publish one wire-form inference request; the caller waits on the returned result."""
    return app.send_task(INFER_TASK, args=[request], queue=queue)
