"""The training task (pretraining, fine-tune and embed jobs) and the recovery of jobs whose worker died.

The worker's main process imports the training code once, before its pool starts
(worker/preload.py, ``ASTROPT_WORKER_PRELOAD``), and never touches CUDA: a job's process starts
CUDA itself, after its devices are set, so no CUDA context exists before a fork.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from celery import Task
from celery.signals import worker_init, worker_process_init, worker_ready
from sqlalchemy.exc import OperationalError

from broker import TRAIN_TASK, enqueue_training
from state.settings import Settings, get_settings
from state.store import repository, session_scope
from state.store.recovery import reap_orphan
from worker.celery_app import app
from worker.fork_guard import no_fork
from worker.outcome import fail_job, final_phase
from worker.retry import RetryLater

log = logging.getLogger(__name__)


@app.task(name=TRAIN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def train_job(self: Task, job_id: str) -> str:
    settings = get_settings()
    try:
        return run_training_job(settings, job_id)
    except RetryLater as exc:
        raise self.retry(countdown=settings.worker_lease_seconds, exc=exc) from exc


def run_training_job(settings: Settings, job_id: str) -> str:
    """Claim ``job_id`` and train it to completion, cancellation or failure; returns the outcome."""
    from worker.launch.placement import NotPlaceable, lease_devices

    if settings.executor == "slurm":  # Slurm places the ranks; this worker submits and follows
        return _run_claimed(settings, job_id, None)
    try:
        with lease_devices(settings, job_id) as lease:  # RetryLater while too few devices are free
            return _run_claimed(settings, job_id, lease)
    except NotPlaceable as exc:  # cancelled while it waited, or no worker could ever run it
        log.info("%s; not retrying", exc)
        return "skipped"


def _run_claimed(settings: Settings, job_id: str, lease: Any) -> str:
    url = settings.resolved_database_url
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    try:
        with session_scope(url) as session:
            # A redelivered message of a job whose worker died settles it first: the attempt
            # limit holds however the job comes back.
            reap_orphan(session, job_id, settings.worker_lease_seconds, settings.max_attempts)
            claimed = repository.claim_job(session, job_id, owner)
            job = repository.get_job(session, job_id)
            if job is None:
                log.warning("job %s no longer exists; dropping its message", job_id)
                return "missing"
            if not claimed:
                return _not_claimed(session, job, settings)
            spec, out_dir = dict(job.spec), job.out_dir
    except OperationalError as exc:
        # The store is busy (SQLite's lock, a statement timeout) or away: nothing was claimed,
        # and the job's message was taken off the queue, so the message must come back.
        # Dropping it would leave the job queued for ever (it counts as published).
        raise RetryLater(
            f"could not claim job {job_id}: the store did not answer ({type(exc.orig).__name__})"
        ) from exc
    from worker.heartbeat import Heartbeat

    # The lease is kept fresh from the claim on, including the slow first import of torch.
    with Heartbeat(url, job_id, owner, interval=max(0.2, settings.worker_lease_seconds / 4)):
        try:
            from jobkinds.registry import (
                kind_of,  # the contract imports astropt (torch): pool process only
            )
            from jobkinds.spec import JobSpec

            contract = JobSpec.model_validate(spec)
            kind = kind_of(contract.kind)
        except (
            Exception
        ) as exc:  # a body that validated at submission but not here (e.g. code change)
            return fail_job(url, job_id, exc)
        if kind.single_process or (lease is not None and len(lease.ids) == 1):
            if lease is not None:
                os.environ.update(lease.env())  # before CUDA starts in this (fresh) pool process
            try:
                config = kind.library_config(contract, out_dir, settings)
            except Exception as exc:
                return fail_job(url, job_id, exc)
            return RUNNERS[kind.runner](settings, job_id, owner, config, out_dir)
        # Several processes: this process only launches and follows them.
        return _run_distributed(settings, job_id, owner, contract, spec, out_dir, lease)


def _run_distributed(
    settings: Settings,
    job_id: str,
    owner: str,
    contract: Any,
    spec: dict[str, Any],
    out_dir: str,
    lease: Any,
) -> str:
    from jobkinds.registry import kind_of

    url = settings.resolved_database_url
    try:
        kind_of(contract.kind).library_config(
            contract, out_dir, settings
        )  # fail here, not in every rank
        if lease is None:
            from worker.launch.slurm import run_on_slurm

            return run_on_slurm(settings, job_id, owner, out_dir, spec)
        from worker.launch.group import train_group

        return train_group(settings, job_id, owner, out_dir, lease)
    except Exception as exc:
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        return fail_job(url, job_id, exc)


def _not_claimed(session: Any, job: Any, settings: Settings) -> str:
    if job.phase == "running":
        raise RetryLater(f"job {job.id} is running on {job.owner}")
    if job.phase == "cancelling":
        raise RetryLater(f"job {job.id} is being cancelled on {job.owner}")
    log.info("job %s is %s; nothing to do", job.id, job.phase)
    return "skipped"


def _run_train(settings: Settings, job_id: str, owner: str, config: Any, out_dir: str) -> str:
    return _train(settings, job_id, owner, config)


def _run_finetune(settings: Settings, job_id: str, owner: str, config: Any, out_dir: str) -> str:
    return _train(settings, job_id, owner, config, finetuning=True)


def _run_embed(settings: Settings, job_id: str, owner: str, config: Any, out_dir: str) -> str:
    from worker.embed_job import run_embed_job

    return run_embed_job(settings, job_id, owner, config, out_dir)


def _run_tokenise(settings: Settings, job_id: str, owner: str, config: Any, out_dir: str) -> str:
    from worker.tokenise_job import run_tokenise_job

    return run_tokenise_job(settings, job_id, owner, config, out_dir)


Runner = Callable[[Settings, str, str, Any, str], str]
# How each kind's library config is run here (jobkinds.base.JobKind.runner names one).
RUNNERS: dict[str, Runner] = {
    "train": _run_train,
    "finetune": _run_finetune,
    "embed": _run_embed,
    "tokenise": _run_tokenise,
}


def _train(
    settings: Settings, job_id: str, owner: str, config: Any, finetuning: bool = False
) -> str:
    from worker.heartbeat import Heartbeat

    url = settings.resolved_database_url
    try:
        # The lease is kept fresh from here on, including the slow first import of torch.
        with Heartbeat(url, job_id, owner, interval=max(0.2, settings.worker_lease_seconds / 4)):
            from worker.callback import StoreCallback

            steps = config.steps if finetuning else config.max_iters
            callback = StoreCallback(
                url,
                job_id,
                owner,
                steps,
                settings.cancel_poll_seconds,
                keep_steps=settings.keep_step_checkpoints,
                max_outage_seconds=settings.worker_store_outage_seconds,
            )
            if finetuning:
                from astropt.finetune import finetune

                result = finetune(config, [callback])
            else:
                from astropt.training import train

                result = train(config, [callback], resume=True)
            callback.drain()  # what a database outage held back, before the outcome
    except Exception as exc:
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        return fail_job(url, job_id, exc)
    if callback.lost_ownership:
        log.warning("job %s was taken over by another worker; leaving its record alone", job_id)
        return "lost"
    phase = final_phase(result.status)

    def finish(session: Any) -> None:
        repository.update_job(session, job_id, iteration=result.step)
        repository.finish_job(session, job_id, phase, result.reason)

    callback.writes.write(finish)
    callback.drain()
    log.info("job %s %s at step %d", job_id, phase, result.step)
    return phase


def recover_orphaned_jobs(settings: Settings, lease_seconds: float | None = None) -> list[str]:
    """Settle jobs whose worker stopped heart-beating: queue them again (or fail them after
    ``max_attempts``) with the reason on record; finish orphaned cancellations.

    ``lease_seconds=0`` treats every running job as orphaned (standalone start-up: no other
    worker can be running them).
    """
    url = settings.resolved_database_url
    lease = settings.worker_lease_seconds if lease_seconds is None else lease_seconds
    requeued: list[str] = []
    with session_scope(url) as session:
        for job in repository.orphaned_jobs(session, lease):
            outcome = reap_orphan(session, job.id, lease, settings.max_attempts)
            if outcome == "requeued":
                requeued.append(job.id)
            elif outcome == "failed":
                log.error("job %s: %s", job.id, repository.get_job(session, job.id).failure_reason)
    for job_id in requeued:
        log.warning(
            "job %s lost its worker; queued again to resume from its last checkpoint", job_id
        )
        _publish(settings, job_id)
    return requeued


def republish_unpublished(settings: Settings, grace_seconds: float | None = None) -> list[str]:
    """Publish queued jobs whose message never reached the broker (``published_at`` unset).

    The API records a job, then publishes it; if it died in between, or the broker failed and
    the job could not be marked failed, the job would stay queued with no message behind it.
    ``grace_seconds`` (default: a few broker timeouts) leaves a publish in flight alone; a
    second message for one job is harmless (the claim is atomic).
    """
    grace = 4 * settings.broker_timeout_seconds + 2 if grace_seconds is None else grace_seconds
    with session_scope(settings.resolved_database_url) as session:
        stranded = repository.unpublished_jobs(session, grace)
    for job_id in stranded:
        log.warning("job %s was queued but never published; publishing it now", job_id)
        _publish(settings, job_id)
    return stranded


def _publish(settings: Settings, job_id: str) -> None:
    enqueue_training(app, job_id, settings.train_queue)
    with session_scope(settings.resolved_database_url) as session:
        repository.mark_published(session, job_id)


_PRELOAD_SECONDS: float | None = None  # logged once logging is set up, at worker_ready


@worker_init.connect
def _preload_training_code(**_: Any) -> None:
    """Before the pool starts, in the main thread: each job's process starts with the training
    code imported (worker/preload.py). Under Slurm the job runs elsewhere: nothing to share."""
    settings = get_settings()
    if settings.worker_preload and settings.executor == "celery":
        from worker.preload import preload

        global _PRELOAD_SECONDS
        _PRELOAD_SECONDS = preload()


@worker_process_init.connect
def _die_with_the_worker(**_: Any) -> None:
    """A pool process never outlives its worker (``kill -9`` of the worker, or of ``astropt
    serve``, which takes its worker down the same way): the job resumes from its checkpoint."""
    from worker.launch.lifeline import die_with_parent

    die_with_parent(signal.SIGKILL)


@worker_ready.connect
def _recover_on_start(**_: Any) -> None:
    """Recover at start-up, then every lease period, from the worker's main process.

    This (not the broker's redelivery) is what brings back a job whose worker was killed:
    the job's heartbeat stops, and the next worker to look puts it back on the queue.
    """
    settings = get_settings()
    if _PRELOAD_SECONDS is not None:
        log.info("training code imported in %.1f s; pool processes share it", _PRELOAD_SECONDS)
    threading.Thread(
        target=_recovery_loop, args=(settings,), name="job-recovery", daemon=True
    ).start()


def _recovery_loop(settings: Settings) -> None:
    while True:
        # Celery forks a pool process for each job from this process: never mid-step (fork_guard).
        with no_fork():
            _recovery_step(settings)
        # twice a lease: a dead worker's job is queued again at most 1.5 leases after its last beat
        time.sleep(settings.worker_lease_seconds / 2)


def _recovery_step(settings: Settings) -> None:
    from worker.launch.placement import advertise_capacity

    try:
        advertise_capacity(settings)
    except Exception:
        log.exception("could not advertise this worker's capacity")
    try:
        recover_orphaned_jobs(settings)
    except Exception:
        log.exception("could not recover orphaned jobs")
    try:
        republish_unpublished(settings)
    except Exception:
        log.exception("could not publish stranded queued jobs")
