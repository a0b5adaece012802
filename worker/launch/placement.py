"""Which devices a job gets on this worker, and what this worker tells the service it offers."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from state.settings import Settings
from state.store import repository, session_scope, workers
from worker.launch.devices import DeviceLease, DevicePool
from worker.retry import RetryLater


@lru_cache(maxsize=1)
def device_pool(configured: int) -> DevicePool:
    return DevicePool.detect(configured)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def advertise_capacity(settings: Settings) -> None:
    """Called with the worker's heartbeat (each lease period) from its main process."""
    pool = device_pool(settings.worker_devices)
    with session_scope(settings.resolved_database_url) as session:
        workers.advertise(session, worker_name(), socket.gethostname(), pool.kind, len(pool), pool.free())


def job_procs(settings: Settings, job_id: str) -> int:
    with session_scope(settings.resolved_database_url) as session:
        job = repository.get_job(session, job_id)
        resources = (job.spec or {}).get("resources") if job is not None else None
    return int((resources or {}).get("procs_per_node", 1))


@contextmanager
def lease_devices(settings: Settings, job_id: str) -> Iterator[DeviceLease]:
    """Lock the devices the job asks for; RetryLater (job stays queued, with a reason) if busy."""
    pool = device_pool(settings.worker_devices)
    procs = job_procs(settings, job_id)
    if procs > len(pool):
        # Submitted before this worker advertised, or routed to a smaller worker: leave it to others.
        _wait(settings, job_id, f"waiting for a worker with {procs} devices (this one has {len(pool)})")
        raise RetryLater(f"job {job_id} needs {procs} devices; worker has {len(pool)}")
    lease = pool.acquire(procs)
    if lease is None:
        _wait(settings, job_id, f"waiting for {procs} free {pool.kind} device(s) on a worker")
        raise RetryLater(f"job {job_id}: fewer than {procs} devices free")
    with lease:
        yield lease


def _wait(settings: Settings, job_id: str, reason: str) -> None:
    with session_scope(settings.resolved_database_url) as session:
        job = repository.get_job(session, job_id)
        if job is not None and job.phase == "queued":
            repository.update_job(session, job_id, waiting_reason=reason)
