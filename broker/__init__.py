"""The message broker contract between ``service/`` and ``worker/``: Celery apps, queue and
task names, publish helpers. Both sides import it; it imports neither (settings are passed in)."""

from broker.apps import (
    BrokerConfig,
    enqueue_training,
    make_inference_app,
    make_train_app,
    send_inference,
)
from broker.names import DEFAULT_INFERENCE_QUEUE, DEFAULT_TRAIN_QUEUE, INFER_TASK, TRAIN_TASK

__all__ = [
    "DEFAULT_INFERENCE_QUEUE",
    "DEFAULT_TRAIN_QUEUE",
    "INFER_TASK",
    "TRAIN_TASK",
    "BrokerConfig",
    "enqueue_training",
    "make_inference_app",
    "make_train_app",
    "send_inference",
]
