"""The tokenise job (``kind: tokenise``): a data source through the codec into a token data
set in the job's directory, through the training task's claim, heartbeat and cancel machinery.
Progress is galaxies done / total in ``iteration`` / ``max_iters`` with an ETA, and the codec's
rate in ``tokens_per_s`` (576 tokens a galaxy). Shards are written whole, so a cancelled,
killed or re-delivered job continues after its last complete shard."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import traceback
from collections.abc import Iterator
from typing import Any

from state.settings import Settings
from state.store import repository
from worker.embed_job import EmbedProgress
from worker.outcome import fail_job

log = logging.getLogger(__name__)


class TokeniseProgress(EmbedProgress):
    """Galaxies done and the codec's rate, written at most every half second."""

    def __init__(self, *args: Any, tokens_per_galaxy: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.tokens_per_galaxy = tokens_per_galaxy
        self.total: int | None = None

    def report(self, done: int, total: int | None, galaxies_per_s: float) -> None:
        total = total if total is not None else self.total or done
        self.progress(done, max(total, done))
        rate = galaxies_per_s * self.tokens_per_galaxy
        self.writes.write(
            lambda session: repository.update_job(session, self.job_id, tokens_per_s=rate)
        )


@contextlib.contextmanager
def may_have_children() -> Iterator[None]:
    """Let this Celery pool process start DataLoader worker processes.

    Pool processes are daemonic, and Python refuses children to daemonic processes. The
    DataLoader's workers watch their parent and exit with it, and the pool process dies with
    the worker (worker/tasks.py), so none outlives the job.
    """
    process = multiprocessing.current_process()
    was = process._config.get("daemon")  # type: ignore[attr-defined]
    process._config["daemon"] = False  # type: ignore[attr-defined]
    try:
        yield
    finally:
        process._config["daemon"] = was  # type: ignore[attr-defined]


def run_tokenise_job(settings: Settings, job_id: str, owner: str, config: Any, out_dir: str) -> str:
    from astropt.constants import TOKENS_PER_IMAGE
    from astropt.stopping import StopRequested
    from astropt.tokens import tokenise

    url = settings.resolved_database_url
    try:
        reporter = TokeniseProgress(
            url,
            job_id,
            owner,
            int(config.limit or 1),
            settings.cancel_poll_seconds,
            max_outage_seconds=settings.worker_store_outage_seconds,
            tokens_per_galaxy=TOKENS_PER_IMAGE,
        )
        reporter.started(str(config.device), None, 0)
        try:
            with may_have_children():
                result = tokenise(
                    config,
                    progress_callback=reporter.report,
                    stop=reporter.should_stop,
                    progress=False,
                )
            phase, count = "completed", result.n_galaxies
        except StopRequested:
            phase, count = "cancelled", None
        reporter.drain()
    except Exception as exc:
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        return fail_job(url, job_id, exc)
    if reporter.lost_ownership:
        log.warning("job %s was taken over by another worker; leaving its record alone", job_id)
        return "lost"

    def finish(session: Any) -> None:
        if count is not None:
            repository.update_job(session, job_id, iteration=count, max_iters=count)
        repository.finish_job(session, job_id, phase, None)

    reporter.writes.write(finish)
    reporter.drain()
    log.info("job %s %s", job_id, phase)
    return phase
