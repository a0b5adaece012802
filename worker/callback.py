"""The training callback that writes progress and metrics to the job store."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from astropt.run_dir import CheckpointKind, prune_step_checkpoints
from astropt.training import TrainCallback
from astropt.training.live_probe import PREFIX as PROBE_PREFIX
from state.store import repository, session_scope
from worker.store_writes import STORE_ERRORS, BufferedWrites

LOGGED_CURVES = ("lr", "tokens_per_s", "mfu", "effective_batch_size")


class StoreCallback(TrainCallback):
    """Writes metric points (upserts, so re-run steps never duplicate) and polls for cancellation."""

    def __init__(
        self,
        database_url: str,
        job_id: str,
        owner: str,
        max_iters: int,
        poll_seconds: float,
        keep_steps: int = 0,
        max_outage_seconds: float = 300.0,
    ):
        self.url, self.job_id, self.owner = database_url, job_id, owner
        # a database outage shorter than this costs the run nothing (docs/operations.md)
        self.writes = BufferedWrites(database_url, max_outage_seconds)
        self.keep_steps = keep_steps
        self.max_iters = max_iters
        self.poll_seconds = poll_seconds
        self._last_poll = 0.0
        self._stop = False
        self.lost_ownership = False
        self._iter_seconds: float | None = None

    def on_start(self, info: dict[str, Any]) -> None:
        start = int(info.get("start_iter", 0))

        def write(session: Any) -> None:
            # Points after the checkpoint we resume from are re-created by the re-run steps.
            repository.delete_points_after(session, self.job_id, start)
            repository.update_job(
                session,
                self.job_id,
                device=str(info.get("device")),
                codec=info.get("codec"),
                n_params=info.get("n_params"),
                iteration=start,
                max_iters=self.max_iters,
            )
            self._record_resources(session, info)
            self._refresh_best(session)

        self.writes.write(write)

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        iter_time = metrics.get("iter_time_s")
        if iter_time is not None:
            previous = self._iter_seconds
            self._iter_seconds = iter_time if previous is None else 0.8 * previous + 0.2 * iter_time
        eta = (
            None
            if self._iter_seconds is None
            else max(0, self.max_iters - step) * self._iter_seconds
        )
        points = [("train_loss", step, metrics["train_loss"])]
        points += [
            (kind, step, metrics[kind]) for kind in LOGGED_CURVES if metrics.get(kind) is not None
        ]

        def write(session: Any) -> None:
            repository.upsert_points(session, self.job_id, points)
            repository.update_job(
                session,
                self.job_id,
                iteration=step,
                tokens_per_s=metrics.get("tokens_per_s"),
                eta_seconds=eta,
                mfu=metrics.get("mfu"),
            )
            memory = metrics.get("gpu_memory_peak_bytes")
            if memory is not None:
                job = repository.get_job(session, self.job_id)
                if job is not None and (job.gpu_memory_peak_bytes or 0) < memory:
                    job.gpu_memory_peak_bytes = int(memory)

        self.writes.write(write)

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        points = [("val_loss", step, metrics["val_loss"])]
        if "train_loss" in metrics:
            points.append(("eval_train_loss", step, metrics["train_loss"]))
        # the live probe's R^2 per label (astropt.training.live_probe), one curve each
        points += [
            (kind, step, value) for kind, value in metrics.items() if kind.startswith(PROBE_PREFIX)
        ]

        def write(session: Any) -> None:
            repository.upsert_points(session, self.job_id, points)
            repository.update_job(session, self.job_id, iteration=step)
            self._refresh_best(session)

        self.writes.write(write)

    def on_checkpoint(self, step: int, path: str, kind: CheckpointKind) -> None:
        name = Path(path).name
        removed = (
            prune_step_checkpoints(Path(path).parent, self.keep_steps) if kind == "step" else []
        )
        self.writes.write(
            lambda session: repository.record_checkpoint(
                session, self.job_id, name, kind, step, removed
            )
        )

    def should_stop(self) -> bool:
        now = time.monotonic()
        if self._stop or now - self._last_poll < self.poll_seconds:
            return self._stop
        self._last_poll = now
        if not self.writes.flush():  # the store is down: keep training (StoreOutage past the limit)
            return self._stop
        try:
            with session_scope(self.url) as session:
                job = repository.get_job(session, self.job_id)
                owner, cancel = (None, False) if job is None else (job.owner, job.cancel_requested)
        except STORE_ERRORS:
            return self._stop
        if owner != self.owner:
            self.lost_ownership = True  # another worker took the job over (or it was removed)
            self._stop = True
        elif cancel:
            self._stop = True
        return self._stop

    def drain(self) -> None:
        """Apply the writes an outage held back (before the job's outcome is recorded)."""
        self.writes.drain()

    def _record_resources(self, session: Any, info: dict[str, Any]) -> None:
        """World size and effective batch as run (a resume may change them), restarts of a group."""
        job = repository.get_job(session, self.job_id)
        if job is None:
            return
        resources = dict(job.resources or {})
        resources.update(
            world_size=int(info.get("world_size", 1)),
            peak=info.get("peak"),
            flops_per_token=info.get("flops_per_token"),
        )
        if info.get("effective_batch_size") is not None:
            resources["effective_batch_size"] = int(info["effective_batch_size"])
        # a fresh group started by the worker, or torchrun's own restart (Slurm)
        restarts = int(os.environ.get("ASTROPT_GROUP_RESTARTS", 0)) + int(
            os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)
        )
        if restarts:
            resources["group_restarts"] = restarts
        if info.get("resumed"):
            resources["resumed_from"] = int(info.get("start_iter", 0))
        job.resources = resources
        job.waiting_reason = None  # it runs

    def _refresh_best(self, session: Any) -> None:
        lowest = repository.lowest_point(session, self.job_id, "val_loss")
        if lowest:
            step, value = lowest
            repository.update_job(session, self.job_id, best_val_loss=value, best_val_step=step)
        else:
            repository.update_job(session, self.job_id, best_val_loss=None, best_val_step=None)
