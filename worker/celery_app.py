"""The Celery application: broker from settings, one job per worker process, late acks.

Run one worker per GPU (see docs/operations.md)::

    CUDA_VISIBLE_DEVICES=0 astropt worker --name gpu0
"""

from __future__ import annotations

from celery import Celery

from service.settings import Settings, get_settings

TRAIN_TASK = "astropt.train"


def make_celery(settings: Settings) -> Celery:
    app = Celery("astropt", broker=settings.resolved_broker_url, include=["worker.tasks"])
    app.conf.update(
        broker_transport_options=settings.broker_transport_options(),
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_acks_late=True,  # a job is acknowledged only once it has finished
        task_reject_on_worker_lost=True,  # a killed pool process puts the job back on the queue
        task_default_queue=settings.train_queue,
        task_routes={TRAIN_TASK: {"queue": settings.train_queue}},
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


app = make_celery(get_settings())
