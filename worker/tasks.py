"""The training task (pretraining and fine-tune jobs) and the recovery of jobs whose worker died.

The worker's main process never imports torch: the training code is imported inside the
task, in the forked pool process, so no CUDA context exists before a fork.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from typing import Any

from celery import Task
from celery.signals import worker_ready

from broker import TRAIN_TASK, enqueue_training
from service.settings import Settings, get_settings
from service.store import repository, session_scope
from worker.celery_app import app

log = logging.getLogger(__name__)
MAX_REASON_CHARS = 4000


class RetryLater(Exception):
    """The job is running elsewhere with a fresh heartbeat: look again later."""


@app.task(name=TRAIN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def train_job(self: Task, job_id: str) -> str:
    settings = get_settings()
    try:
        return run_training_job(settings, job_id)
    except RetryLater as exc:
        raise self.retry(countdown=settings.worker_lease_seconds, exc=exc) from exc


def run_training_job(settings: Settings, job_id: str) -> str:
    """Claim ``job_id`` and train it to completion, cancellation or failure; returns the outcome."""
    from worker.launch.placement import lease_devices

    if settings.executor == "slurm":  # Slurm places the ranks; this worker submits and follows
        return _run_claimed(settings, job_id, None)
    with lease_devices(settings, job_id) as lease:  # RetryLater while too few devices are free
        return _run_claimed(settings, job_id, lease)


def _run_claimed(settings: Settings, job_id: str, lease: Any) -> str:
    url = settings.resolved_database_url
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    with session_scope(url) as session:
        claimed = repository.claim_job(session, job_id, owner, settings.worker_lease_seconds)
        job = repository.get_job(session, job_id)
        if job is None:
            log.warning("job %s no longer exists; dropping its message", job_id)
            return "missing"
        if not claimed:
            return _not_claimed(session, job, settings)
        spec, out_dir = dict(job.spec), job.out_dir
    from worker.heartbeat import Heartbeat

    # The lease is kept fresh from the claim on, including the slow first import of torch.
    with Heartbeat(url, job_id, owner, interval=max(0.2, settings.worker_lease_seconds / 4)):
        if spec.get("kind") == "finetune":  # one process, in this pool process
            if lease is not None:
                os.environ.update(lease.env())
            try:
                config = _finetune_config(spec, out_dir)
            except Exception as exc:
                return _fail(url, job_id, exc)
            return _train(settings, job_id, owner, config, finetuning=True)
        if lease is not None and len(lease.ids) == 1:
            os.environ.update(lease.env())  # before CUDA starts in this (fresh) pool process
            try:
                config = _training_config(spec, out_dir, settings)
            except Exception as exc:  # a spec that validated at submission but not here (e.g. code change)
                return _fail(url, job_id, exc)
            return _train(settings, job_id, owner, config)
        # Several processes: this process only launches and follows them.
        return _run_distributed(settings, job_id, owner, spec, out_dir, lease)


def _run_distributed(settings: Settings, job_id: str, owner: str, spec: dict[str, Any], out_dir: str,
                     lease: Any) -> str:
    url = settings.resolved_database_url
    try:
        _training_config(dict(spec), out_dir, settings)  # fail here, not in every rank
        if lease is None:
            from worker.launch.slurm import run_on_slurm

            return run_on_slurm(settings, job_id, owner, out_dir, spec)
        from worker.launch.group import train_group

        return train_group(settings, job_id, owner, out_dir, lease)
    except Exception as exc:
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        return _fail(url, job_id, exc)


def _not_claimed(session: Any, job: Any, settings: Settings) -> str:
    if job.phase == "running":
        raise RetryLater(f"job {job.id} is running on {job.owner}")
    if job.phase == "cancelling":
        if job.id in {orphan.id for orphan in repository.orphaned_jobs(session, settings.worker_lease_seconds)}:
            repository.finish_job(session, job.id, "cancelled")
            return "cancelled"
        raise RetryLater(f"job {job.id} is being cancelled on {job.owner}")
    log.info("job %s is %s; nothing to do", job.id, job.phase)
    return "skipped"


def _training_config(spec: dict[str, Any], out_dir: str, settings: Settings) -> Any:
    from astropt.config import TrainConfig

    spec["out_dir"] = out_dir
    for key in ("resources", "kind", "finetune"):  # the service's; see worker/launch
        spec.pop(key, None)
    if not spec.get("checkpoint_interval"):
        # A killed worker loses at most this many iterations.
        spec["checkpoint_interval"] = settings.worker_checkpoint_interval
    return TrainConfig.model_validate(spec)


def _finetune_config(spec: dict[str, Any], out_dir: str) -> Any:
    """The library's run config of a fine-tune job: its section, the resolved init directory
    and the top-level data, device, seed and threads."""
    from astropt.finetune import FinetuneConfig

    section = dict(spec["finetune"])
    section.pop("init")
    init = section.pop("init_dir")
    top = {key: spec[key] for key in ("data", "device", "seed", "num_threads") if key in spec}
    return FinetuneConfig.model_validate({**section, **top, "init": init, "out_dir": out_dir})


def _train(settings: Settings, job_id: str, owner: str, config: Any, finetuning: bool = False) -> str:
    from worker.heartbeat import Heartbeat

    url = settings.resolved_database_url
    try:
        # The lease is kept fresh from here on, including the slow first import of torch.
        with Heartbeat(url, job_id, owner, interval=max(0.2, settings.worker_lease_seconds / 4)):
            from worker.callback import StoreCallback

            steps = config.steps if finetuning else config.max_iters
            callback = StoreCallback(url, job_id, owner, steps, settings.cancel_poll_seconds,
                                     keep_steps=settings.keep_step_checkpoints)
            if finetuning:
                from astropt.finetune import finetune

                result = finetune(config, [callback])
            else:
                from astropt.training import train

                result = train(config, [callback], resume=True)
    except Exception as exc:
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        return _fail(url, job_id, exc)
    if callback.lost_ownership:
        log.warning("job %s was taken over by another worker; leaving its record alone", job_id)
        return "lost"
    phase = "completed" if result.status == "completed" else "cancelled"
    with session_scope(url) as session:
        repository.update_job(session, job_id, iteration=result.step)
        repository.finish_job(session, job_id, phase)
    log.info("job %s %s at step %d", job_id, phase, result.step)
    return phase


def _fail(url: str, job_id: str, exc: BaseException) -> str:
    reason = f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]
    with session_scope(url) as session:
        repository.finish_job(session, job_id, "failed", reason)
    return "failed"


def recover_orphaned_jobs(settings: Settings, lease_seconds: float | None = None) -> list[str]:
    """Requeue running jobs whose worker stopped heart-beating; finish orphaned cancellations.

    ``lease_seconds=0`` treats every running job as orphaned (standalone start-up: no other
    worker can be running them).
    """
    url = settings.resolved_database_url
    lease = settings.worker_lease_seconds if lease_seconds is None else lease_seconds
    requeued: list[str] = []
    with session_scope(url) as session:
        for job in repository.orphaned_jobs(session, lease):
            if job.phase == "cancelling":
                repository.finish_job(session, job.id, "cancelled")
            elif repository.requeue_if_orphaned(session, job.id, lease):
                requeued.append(job.id)
    for job_id in requeued:
        log.warning("job %s lost its worker; queued again to resume from its last checkpoint", job_id)
        enqueue_training(app, job_id, settings.train_queue)
    return requeued


@worker_ready.connect
def _recover_on_start(**_: Any) -> None:
    """Recover at start-up, then every lease period, from the worker's main process.

    This (not the broker's redelivery) is what brings back a job whose worker was killed:
    the job's heartbeat stops, and the next worker to look puts it back on the queue.
    """
    settings = get_settings()
    threading.Thread(target=_recovery_loop, args=(settings,), name="job-recovery", daemon=True).start()


def _recovery_loop(settings: Settings) -> None:
    from worker.launch.placement import advertise_capacity

    while True:
        try:
            advertise_capacity(settings)
        except Exception:
            log.exception("could not advertise this worker's capacity")
        try:
            recover_orphaned_jobs(settings)
        except Exception:
            log.exception("could not recover orphaned jobs")
        time.sleep(settings.worker_lease_seconds)
