"""The training workers' Celery app (built by ``broker``), with this package's tasks.

Run one worker per GPU (see docs/operations.md)::

    CUDA_VISIBLE_DEVICES=0 astropt worker --name gpu0
"""

from __future__ import annotations

from broker import make_train_app
from state.settings import get_settings

_settings = get_settings()
app = make_train_app(_settings.broker_config(), _settings.train_queue)
app.conf.include = ["worker.tasks"]
