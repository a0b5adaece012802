"""The embedding job (``kind: embed``): a model over every galaxy of a data source into a
catalogue in the job's directory, through the training task's claim, heartbeat and cancel
machinery. Progress is galaxies done / total in ``iteration`` / ``max_iters``; the rows go to
shards as they are embedded, so a cancelled, killed or re-delivered job continues after its
last complete shard (``resources.resumed_from`` says where)."""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path
from typing import Any

from state.settings import Settings
from state.store import repository
from worker.callback import StoreCallback
from worker.outcome import fail_job

log = logging.getLogger(__name__)
PROGRESS_SECONDS = (
    0.5  # at most this often a progress write (small models run many batches a second)
)


class EmbedProgress(StoreCallback):
    """The training callback's store writes and cancel polling, with galaxies for steps."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._last_write = 0.0
        self._first: tuple[int, float] | None = None

    def started(self, device: str, codec: dict[str, Any] | None, n_params: int) -> None:
        def write(session: Any) -> None:
            repository.update_job(
                session, self.job_id, device=device, codec=codec, n_params=n_params
            )
            job = repository.get_job(session, self.job_id)
            if job is not None:
                job.waiting_reason = None

        self.writes.write(write)

    def progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first = (done, now)
            self._resumed(done)
        if done < total and now - self._last_write < PROGRESS_SECONDS:
            return
        self._last_write = now
        first_done, first_at = self._first
        rate = (
            (done - first_done) / (now - first_at) if done > first_done and now > first_at else None
        )
        eta = None if rate is None else (total - done) / rate
        self.writes.write(
            lambda session: repository.update_job(
                session, self.job_id, iteration=done, max_iters=total, eta_seconds=eta
            )
        )

    def _resumed(self, done: int) -> None:
        def write(session: Any) -> None:
            job = repository.get_job(session, self.job_id)
            if job is not None:
                job.resources = {**(job.resources or {}), "resumed_from": done}

        self.writes.write(write)


def run_embed_job(
    settings: Settings, job_id: str, owner: str, spec: dict[str, Any], out_dir: str
) -> str:
    url = settings.resolved_database_url
    try:
        reporter = EmbedProgress(
            url,
            job_id,
            owner,
            int(spec.get("max_iters", 1)),
            settings.cancel_poll_seconds,
            max_outage_seconds=settings.worker_store_outage_seconds,
        )
        result = _embed(settings, spec, out_dir, reporter)
        reporter.drain()
    except Exception as exc:
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        return fail_job(url, job_id, exc)
    if reporter.lost_ownership:
        log.warning("job %s was taken over by another worker; leaving its record alone", job_id)
        return "lost"
    phase = "completed" if result.status == "completed" else "cancelled"

    def finish(session: Any) -> None:
        if phase == "completed":
            repository.update_job(session, job_id, iteration=result.count, max_iters=result.count)
        else:  # the galaxies embedded before the stop (progress writes are throttled, so may lag)
            repository.update_job(session, job_id, iteration=result.count)
        repository.finish_job(session, job_id, phase, None)

    reporter.writes.write(finish)
    reporter.drain()
    log.info("job %s %s after %d galaxies", job_id, phase, result.count)
    return phase


def _embed(settings: Settings, spec: dict[str, Any], out_dir: str, reporter: EmbedProgress) -> Any:
    from astropt.run_dir import RunDir
    from astropt.science import EmbedOptions, SourceSpec, embed_catalogue, load_embed_model
    from astropt.torch_policy import choose_device, set_threads

    section, data = spec["embed"], spec["data"]
    set_threads(spec.get("num_threads"))
    device = choose_device(spec.get("device", "auto"))
    cap = min(section.get("limit") or settings.max_embed_objects, settings.max_embed_objects)
    if data["source"] == "mock":
        source = SourceSpec(
            "mock", n=data["n_mock"], seed=data["mock_seed"], path=data.get("path"), limit=cap
        )
    elif data["source"] == "hf":
        columns = section.get("columns")
        source = SourceSpec(
            "hf",
            path=data["hf_dataset"],
            hf_split=data.get("hf_split", "train"),
            streaming=data.get("streaming", True),
            image_column=data.get("image_column", "legacysurvey_image"),
            limit=cap,
            columns=None if columns is None else tuple(columns),
        )
    elif data["source"] == "tokens":  # data.path: resolved by the service from data.job_id
        source = SourceSpec("tokens", path=data["path"], limit=cap)
    else:
        source = SourceSpec(
            "local",
            path=data["path"],
            image_column=data.get("image_column", "legacysurvey_image"),
            limit=cap,
        )
    options = EmbedOptions(
        pool=section["pool"],
        layer=section["layer"],
        centre=section["centre"],
        batch_size=section["batch_size"],
    )
    model = load_embed_model(
        section["model_dir"], device=device, random_init=section.get("random_init")
    )
    reporter.started(
        str(device), model.codec_info(), sum(p.numel() for p in model.model.parameters())
    )
    return embed_catalogue(
        model,
        source,
        RunDir(Path(out_dir)).catalogue,
        options,
        progress=reporter.progress,
        should_stop=reporter.should_stop,
        shard_rows=settings.embed_shard_rows,
    )
