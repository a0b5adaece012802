"""The durable job store: engine/session, ORM models and repository functions.

Workers may import this package and ``state.settings``; never the routes.
"""

from state.store import workers
from state.store.db import get_engine, migrate, ping, session_scope
from state.store.models import ACTIVE_PHASES, FINISHED_PHASES, PHASES, Job, MetricPoint
from state.store.repository import best_checkpoint_dir, latest_completed_job

__all__ = [
    "ACTIVE_PHASES",
    "FINISHED_PHASES",
    "PHASES",
    "Job",
    "MetricPoint",
    "best_checkpoint_dir",
    "get_engine",
    "latest_completed_job",
    "migrate",
    "ping",
    "session_scope",
    "workers",
]
