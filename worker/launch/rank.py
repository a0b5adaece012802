"""One rank of a job's process group: ``python -m worker.launch.rank JOB_ID OWNER``.

Started by torchrun (``--standalone`` from a Celery worker, or on every node of a Slurm
allocation). Every rank trains; rank 0 alone reports to the store, through the same
:class:`StoreCallback` as a single-process job, and writes the checkpoints. SIGTERM (cancel
through Slurm, a worker shutting down) stops all ranks at the same step, after a checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from astropt.training import TrainCallback
from state.settings import Settings, get_settings
from state.store import repository, session_scope
from worker.launch.group_result import write_result
from worker.launch.lifeline import die_with_parent


def training_config(spec: dict[str, Any], out_dir: str, settings: Settings) -> Any:
    """The TrainConfig of a stored job body: the job kind's own conversion."""
    from jobkinds.kinds.train import train_config
    from jobkinds.spec import JobSpec

    return train_config(JobSpec.model_validate(spec), out_dir, settings)


class StopOnSignal(TrainCallback):
    """Turns SIGTERM/SIGINT into a graceful stop (the loop checkpoints, then returns)."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        logging.getLogger(__name__).warning(
            "rank got signal %d: stopping after a checkpoint", signum
        )
        self.requested = True

    def should_stop(self) -> bool:
        return self.requested


def main(argv: list[str]) -> int:
    if os.environ.get("ASTROPT_RANK_DIE_WITH_PARENT", "1") == "1":
        die_with_parent()
    job_id, owner = argv
    settings = get_settings()
    url = settings.resolved_database_url
    rank = int(os.environ.get("RANK", 0))
    with session_scope(url) as session:
        job = repository.get_job(session, job_id)
        if job is None:
            print(f"job {job_id} does not exist", file=sys.stderr)
            return 2
        spec, out_dir = dict(job.spec), job.out_dir
    stop = StopOnSignal()
    from jobkinds.spec import JobSpec

    contract = JobSpec.model_validate(spec)
    if (
        contract.kind == "tokenise"
    ):  # each rank its part of the source (worker/launch/tokenise_rank.py)
        from worker.launch.tokenise_rank import run_tokenise_rank

        return run_tokenise_rank(
            settings,
            job_id,
            owner,
            contract,
            out_dir,
            rank,
            int(os.environ.get("WORLD_SIZE", 1)),
            stop.should_stop,
        )
    config = training_config(spec, out_dir, settings)

    from astropt.training import train
    from worker.callback import StoreCallback

    callbacks: list[TrainCallback] = [stop]
    store = None
    if rank == 0:
        store = StoreCallback(
            url,
            job_id,
            owner,
            config.max_iters,
            settings.cancel_poll_seconds,
            keep_steps=settings.keep_step_checkpoints,
        )
        callbacks.insert(0, store)
    result = train(config, callbacks, resume=True)
    if rank == 0:
        write_result(
            out_dir,
            result.status,
            result.step,
            reason=result.reason,
            lost_ownership=bool(store and store.lost_ownership),
            signalled=stop.requested,
        )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    raise SystemExit(main(sys.argv[1:]))
