"""Which devices a job gets on this worker, and what this worker tells the service it offers."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from state.settings import Settings
from state.store import repository, session_scope, workers
from state.store.models import FINISHED_PHASES
from worker.launch.devices import DeviceLease, DevicePool
from worker.retry import RetryLater

DEVICE_LOCKS = "devices"  # folder of the device lock files in the data directory


def device_pool(settings: Settings) -> DevicePool:
    """This worker's devices, locked in ``<data_dir>/devices/<host>``: the workers of one service on
    one host share the locks; two services with different data directories on one host never take
    each other's devices, and hosts sharing a data directory (a network file system) lock their
    own."""
    lock_dir = settings.data_dir.expanduser().resolve() / DEVICE_LOCKS / socket.gethostname()
    return _pool(settings.worker_devices, lock_dir)


@lru_cache(maxsize=4)
def _pool(configured: int, lock_dir: Path) -> DevicePool:
    return DevicePool.detect(configured, lock_dir)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def advertise_capacity(settings: Settings) -> None:
    """Called with the worker's heartbeat (each lease period) from its main process."""
    pool = device_pool(settings)
    with session_scope(settings.resolved_database_url) as session:
        workers.advertise(
            session, worker_name(), socket.gethostname(), pool.kind, len(pool), pool.free()
        )


class NotPlaceable(Exception):
    """The job needs no placement (it is no longer waiting) or can never be placed; the reason
    is on the job's record already."""


def _needs(settings: Settings, job_id: str) -> tuple[str, int, str]:
    """The job's phase, processes per node and requested device."""
    with session_scope(settings.resolved_database_url) as session:
        job = repository.get_job(session, job_id)
        if job is None:
            return "missing", 1, "auto"
        spec = job.spec or {}
        return (
            job.phase,
            int((spec.get("resources") or {}).get("procs_per_node", 1)),
            str(spec.get("device", "auto")),
        )


def _larger_worker_online(settings: Settings, procs: int, kind: str | None) -> bool:
    with session_scope(settings.resolved_database_url) as session:
        online = workers.online(session, settings.worker_lease_seconds)
        return any(w.devices >= procs and (kind is None or w.device_kind == kind) for w in online)


def _fail(settings: Settings, job_id: str, reason: str) -> None:
    with session_scope(settings.resolved_database_url) as session:
        job = repository.get_job(session, job_id)
        if job is not None and job.phase == "queued":
            repository.finish_job(session, job_id, "failed", reason)


@contextmanager
def lease_devices(settings: Settings, job_id: str) -> Iterator[DeviceLease]:
    """Lock the devices the job asks for; RetryLater (job stays queued, with a reason) if busy.

    :class:`NotPlaceable` when the job was cancelled (or otherwise finished) while it waited, and
    when no online worker could ever run it (the job is failed, saying why): a job never waits
    for a worker that does not exist.
    """
    pool = device_pool(settings)
    phase, procs, device = _needs(settings, job_id)
    if phase in FINISHED_PHASES or phase == "missing":
        raise NotPlaceable(f"job {job_id} is {phase}")
    wants_gpu = device == "cuda" or device.startswith("cuda:")
    if wants_gpu and pool.kind != "cuda":
        if not _larger_worker_online(settings, procs, "cuda"):
            _fail(
                settings,
                job_id,
                f"device '{device}' requested but no online worker has a GPU "
                f"(this one offers {len(pool)} {pool.kind} device(s)); use device 'auto' or 'cpu'",
            )
            raise NotPlaceable(f"job {job_id} needs a GPU")
        _wait(settings, job_id, "waiting for a worker with a GPU")
        raise RetryLater(f"job {job_id} needs a GPU; this worker has none")
    if procs > len(pool):
        if not _larger_worker_online(settings, procs, "cuda" if wants_gpu else None):
            _fail(
                settings,
                job_id,
                f"resources.procs_per_node asks for {procs} devices; no online worker "
                f"has that many (this one has {len(pool)} {pool.kind} device(s))",
            )
            raise NotPlaceable(f"job {job_id} needs {procs} devices")
        # Routed to a smaller worker while a larger one is online: leave it to that one.
        _wait(
            settings,
            job_id,
            f"waiting for a worker with {procs} devices (this one has {len(pool)})",
        )
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
