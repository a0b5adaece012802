"""The checkpoint a job starts from, resolved at submission to a directory the worker reads:
a fine-tune's ``finetune.init`` and a training job's ``init_from`` (a warm start), each
``'shipped'``, ``{job, checkpoint}`` (a job of this service) or ``{path}`` (inside the data roots)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from astropt.checkpoints import CheckpointError, read_meta
from astropt.run_dir import CHECKPOINT_NAME, CONFIG_FILE, RunDir
from astropt.training.warm_start import InitMismatch, adopt_checkpoint
from jobkinds.checks import inside, roots_text
from jobkinds.spec import CheckpointPath, JobCheckpoint, JobSpec
from state.errors import NotFound, SpecInvalid
from state.settings import Settings
from state.store import repository

Init = str | JobCheckpoint | CheckpointPath


def checkpoint_dir(out_dir: Path, name: str) -> Path:
    if not CHECKPOINT_NAME.match(name):
        raise NotFound(f"no checkpoint {name!r}: names are best, last or step_NNNNNN")
    root = out_dir.resolve()
    directory = RunDir(root).checkpoint(name).resolve()  # a symlinked checkpoint must stay inside
    if not directory.is_relative_to(root) or not (directory / CONFIG_FILE).is_file():
        raise NotFound(f"checkpoint {name!r} does not exist (yet) in this job's run directory")
    return directory


def check_init_path(init: Init, field: str, settings: Settings) -> None:
    """A ``{path}`` init must lie inside the readable data roots."""
    if isinstance(init, CheckpointPath) and not inside(Path(init.path), settings.readable_roots):
        raise SpecInvalid(
            f"{field}.path",
            f"{field}.path ({init.path}) is outside the allowed data "
            f"roots: {roots_text(settings.readable_roots)}",
        )


def init_directory(session: Session, init: Init, field: str) -> Path:
    """The checkpoint directory ``init`` names; a 422 naming ``field`` when there is none."""
    from astropt.checkpoints.shipped import SHIPPED_MODEL_DIR

    if isinstance(init, JobCheckpoint):
        job = repository.get_job(session, init.job)
        if job is None:
            raise SpecInvalid(f"{field}.job", f"{field}.job: job {init.job} not found")
        try:
            directory = checkpoint_dir(Path(job.out_dir), init.checkpoint)
        except NotFound as exc:
            raise SpecInvalid(f"{field}.checkpoint", f"job {init.job}: {exc.detail}") from exc
    elif isinstance(init, CheckpointPath):
        directory = Path(init.path).expanduser().resolve()
    else:
        directory = SHIPPED_MODEL_DIR
    try:
        read_meta(directory)
    except CheckpointError as exc:
        raise SpecInvalid(field, f"{field}: {exc}") from exc
    return directory


def prepare_warm_start(session: Session, settings: Settings, spec: JobSpec) -> JobSpec:
    """The spec with ``init_from`` resolved (``init_from_dir``) and the checkpoint's model shape
    and codec filled in where the spec sets none; a 422 naming every field that differs."""
    assert spec.init_from is not None
    check_init_path(spec.init_from, "init_from", settings)
    directory = init_directory(session, spec.init_from, "init_from")
    try:
        adopted = adopt_checkpoint(spec, read_meta(directory), "checkpoint")
    except InitMismatch as exc:
        raise SpecInvalid(next(iter(exc.conflicts)), str(exc)) from exc
    except (ValueError, TypeError, AttributeError) as exc:  # a checkpoint's odd model_args
        raise SpecInvalid(
            "init_from", f"init_from: the checkpoint's model cannot be used: {exc}"
        ) from exc
    return adopted.model_copy(update={"init_from_dir": str(directory)})
