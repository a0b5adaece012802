"""One rank of a tokenise job's process group (``resources.procs_per_node`` x ``nodes`` ranks,
under torchrun or Slurm): each rank tokenises its disjoint part of the source (its shards where
the source has them, else every k-th row) into the same data set; the last rank to finish
writes the manifest (:func:`astropt.tokens.finalize_manifest`). Rank 0 reports progress (its
galaxies times the world size) and polls for a cancel; the others stop on SIGTERM."""

from __future__ import annotations

import time
from typing import Any

from jobkinds.registry import kind_of
from jobkinds.spec import JobSpec
from state.settings import Settings
from worker.launch.group_result import write_result

MANIFEST_WAIT_S = 0.5


def run_tokenise_rank(
    settings: Settings,
    job_id: str,
    owner: str,
    contract: JobSpec,
    out_dir: str,
    rank: int,
    world_size: int,
    should_stop: Any,
) -> int:
    from astropt.constants import TOKENS_PER_IMAGE
    from astropt.stopping import StopRequested
    from astropt.tokens import finalize_manifest, tokenise
    from worker.tokenise_job import TokeniseProgress, may_have_children

    config = kind_of(contract.kind).library_config(contract, out_dir, settings)
    config = config.model_copy(update={"rank": rank, "world_size": world_size})
    reporter = None
    stop = should_stop
    if rank == 0:
        reporter = TokeniseProgress(
            settings.resolved_database_url,
            job_id,
            owner,
            int(contract.max_iters or 1),
            settings.cancel_poll_seconds,
            max_outage_seconds=settings.worker_store_outage_seconds,
            tokens_per_galaxy=TOKENS_PER_IMAGE,
        )

        def report(done: int, total: int | None, rate: float) -> None:
            assert reporter is not None
            reporter.report(
                done * world_size, None if total is None else total * world_size, rate * world_size
            )

        def stop() -> bool:
            return should_stop() or reporter.should_stop()

    status, count = "completed", 0
    try:
        with may_have_children():
            result = tokenise(
                config, progress_callback=report if rank == 0 else None, stop=stop, progress=False
            )
        count = result.n_galaxies
        if rank == 0:  # the other ranks may still be writing: the manifest comes with the last
            while (manifest := finalize_manifest(config.out_dir, job_id=config.job_id)) is None:
                if stop():
                    raise StopRequested("stopped while waiting for the other ranks")
                time.sleep(MANIFEST_WAIT_S)
            count = int(manifest["n_galaxies"])
    except StopRequested:
        status = "stopped"
    if reporter is not None:
        reporter.drain()
        write_result(out_dir, status, count, lost_ownership=reporter.lost_ownership)
    return 0
