"""What every job kind owns, in one place: its checks, its capacity needs, its preparation at
submission, its resume rule, and its conversion to the library's config for the worker.

A kind is a subclass of :class:`JobKind` in ``jobkinds/kinds/`` plus one line in
:mod:`jobkinds.registry`. The service calls ``check`` and ``prepare``; the worker calls
``library_config`` on the stored body validated as :class:`~jobkinds.spec.JobSpec` and runs it
with the runner the kind names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal

from sqlalchemy.orm import Session

from jobkinds.checks import check_spec
from jobkinds.disk import check_budget, mock_bytes
from jobkinds.spec import JobSpec
from jobkinds.tokens_source import check_tokens_source, resolve_tokens_source
from state.errors import Conflict, SpecInvalid
from state.settings import Settings

# The worker's entry points (worker/runners.py): how a kind's library config is run.
Runner = Literal["train", "finetune", "embed", "tokenise"]
ResumeFrom = Literal["checkpoint", "shards"]


class JobKind(ABC):
    name: ClassVar[str]
    runner: ClassVar[Runner]
    single_process: ClassVar[bool] = True  # False: ``resources`` may ask for several ranks
    resume_from: ClassVar[ResumeFrom] = "checkpoint"  # what a resumed job continues from

    def resolve(self, session: Session, spec: JobSpec, settings: Settings) -> JobSpec:
        """The spec as the rules should see it (a token data set's job resolved to its path; a
        warm start's model shape filled in from its checkpoint); runs before :meth:`check`."""
        return resolve_tokens_source(session, spec)

    def check(self, spec: JobSpec, settings: Settings) -> None:
        """Every rule the spec must meet that needs no database (422 naming the field)."""
        check_spec(spec, settings)
        check_tokens_source(spec)
        check_budget(f"this {self.name} job", self.output_bytes(spec, settings), settings)

    def output_bytes(self, spec: JobSpec, settings: Settings) -> int:
        """An upper estimate of what the job writes under the data directory (the disk budget)."""
        return mock_bytes(spec)

    def prepare(
        self, session: Session, spec: JobSpec, body: dict[str, Any], settings: Settings
    ) -> None:
        """Write what the service resolves at submission into the stored ``body``
        (checkpoint directories, the job's step count as ``max_iters``); nothing by default."""
        return None

    @abstractmethod
    def library_config(self, spec: JobSpec, out_dir: str, settings: Settings) -> Any:
        """The config the worker hands the library (``astropt``) for this job."""

    def resume_body(
        self, body: dict[str, Any], target: int | None, done: str | None
    ) -> tuple[dict[str, Any], int]:
        """The stored body and ``max_iters`` of a resumed job; ``done`` is the job's phase
        (a completed shard-based job has nothing left to do)."""
        if self.resume_from == "shards":
            if done == "completed":
                raise Conflict(
                    f"this {self.name} job has completed; submit a new one to run it again"
                )
            return dict(body), int(body.get("max_iters") or 0)
        assert target is not None
        return {**body, "max_iters": target}, target


def require_one_process(spec: JobSpec, what: str) -> None:
    """The capacity rule of a kind that runs in one process (``single_process``)."""
    if spec.resources.world_size != 1:
        raise SpecInvalid("resources", f"{what} runs in one process: leave resources at 1 x 1")


def checkpoint_resume_target(
    out_dir: Path, requested: int | None, current: int, limit: int, job_id: str
) -> int:
    """The ``max_iters`` a checkpoint-based resume trains to (409/422 when it cannot)."""
    from astropt.run_dir import RunDir

    step = RunDir(out_dir).last_step()
    if step is None:
        raise Conflict(f"job {job_id} has no checkpoint to resume from; submit it again instead")
    target = requested or current
    if target > limit:
        raise SpecInvalid(
            "max_iters", f"max_iters ({target}) exceeds this service's limit of {limit}"
        )
    if target <= step:
        raise Conflict(
            f"job {job_id} already reached iteration {step}; "
            f"give max_iters greater than {step} to train further"
        )
    return target
