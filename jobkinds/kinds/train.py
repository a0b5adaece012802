"""``kind: train``: pretrain a model (the top level of the spec is a
:class:`~astropt.config.TrainConfig`), from random weights or warm-started from a checkpoint."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy.orm import Session

from jobkinds.base import JobKind, Runner
from jobkinds.checkpoints import prepare_warm_start
from jobkinds.disk import checkpoint_bytes, mock_bytes
from jobkinds.spec import JobSpec
from state.errors import SpecInvalid
from state.settings import Settings


class TrainKind(JobKind):
    name = "train"
    runner: ClassVar[Runner] = "train"
    single_process = False

    def resolve(self, session: Session, spec: JobSpec, settings: Settings) -> JobSpec:
        spec = super().resolve(session, spec, settings)
        if spec.init_from is not None:  # first: the limits apply to the checkpoint's model shape
            return prepare_warm_start(session, settings, spec)
        return spec.model_copy(update={"init_from_dir": None})  # only the service names it

    def check(self, spec: JobSpec, settings: Settings) -> None:
        super().check(spec, settings)
        interval = spec.checkpoint_interval  # 0: the service's own interval (its operator's choice)
        writes = spec.max_iters // interval if interval else 0
        if writes > settings.max_checkpoints_per_job:
            least = -(-spec.max_iters // settings.max_checkpoints_per_job)
            raise SpecInvalid(
                "checkpoint_interval",
                f"max_iters {spec.max_iters} with checkpoint_interval "
                f"{interval} writes {writes:,} checkpoints; this service allows "
                f"{settings.max_checkpoints_per_job:,} a job (setting "
                f"ASTROPT_MAX_CHECKPOINTS_PER_JOB): use checkpoint_interval >= {least}",
            )

    def output_bytes(self, spec: JobSpec, settings: Settings) -> int:
        return mock_bytes(spec) + checkpoint_bytes(spec, settings)

    def library_config(self, spec: JobSpec, out_dir: str, settings: Settings) -> Any:
        return train_config(spec, out_dir, settings)


def train_config(spec: JobSpec, out_dir: str, settings: Settings) -> Any:
    """The :class:`~astropt.config.TrainConfig` of a train job, in the worker and in every rank."""
    from astropt.config import TrainConfig

    body = spec.train_config()
    body["out_dir"] = out_dir
    if not body.get("checkpoint_interval"):
        body["checkpoint_interval"] = (
            settings.worker_checkpoint_interval
        )  # a killed worker loses at most this
    return TrainConfig.model_validate(body)
