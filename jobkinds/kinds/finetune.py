"""``kind: finetune``: a task head (LoRA, full or head-only) on a checkpoint. What its spec may
ask, the checkpoint its ``init`` names (resolved at submission, so the worker reads a
directory), and its :class:`~astropt.finetune.FinetuneConfig`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from astropt.checkpoints import read_meta
from astropt.finetune.labels import LabelError, available_labels, check_labels
from jobkinds.base import JobKind, Runner, require_one_process
from jobkinds.checkpoints import check_init_path, init_directory
from jobkinds.checks import inside, roots_text
from jobkinds.spec import FinetuneSection, JobSpec
from jobkinds.tokens_source import tokens_read_by_model
from state.errors import SpecInvalid
from state.settings import Settings


def check_finetune(spec: JobSpec, settings: Settings) -> None:
    """Bounds, paths and labels of a fine-tune spec (the database is not needed)."""
    ft = spec.finetune
    assert ft is not None
    require_one_process(spec, "a fine-tune job")
    for field, value, limit, setting in (
        ("finetune.steps", ft.steps, settings.max_iters_limit, "max_iters_limit"),
        ("finetune.eval_interval", ft.eval_interval, settings.max_iters_limit, "max_iters_limit"),
        ("finetune.batch_size", ft.batch_size, settings.max_batch_size, "max_batch_size"),
        ("finetune.max_objects", ft.max_objects or 0, settings.max_n_mock, "max_n_mock"),
    ):
        if value > limit:
            raise SpecInvalid(
                field,
                f"{field} ({value}) exceeds this service's limit of {limit} "
                f"(setting ASTROPT_{setting.upper()})",
            )
    if spec.data.source == "hf":
        raise SpecInvalid(
            "data.source",
            "a fine-tune reads a finite data set: data.source mock, local or tokens",
        )
    if ft.label_table and not inside(Path(ft.label_table), settings.readable_roots):
        raise SpecInvalid(
            "finetune.label_table",
            f"finetune.label_table ({ft.label_table}) is outside "
            f"the allowed data roots: {roots_text(settings.readable_roots)}",
        )
    check_init_path(ft.init, "finetune.init", settings)
    try:
        available, where = available_labels(ft.label_table, spec.data.source, spec.data.path)
        check_labels(ft.labels, available, where)
    except LabelError as exc:
        raise SpecInvalid("finetune.labels", str(exc)) from exc


def init_dir(session: Session, section: FinetuneSection) -> Path:
    """The checkpoint directory ``init`` names; a 422 naming the field when there is none."""
    return init_directory(session, section.init, "finetune.init")


def prepare_body(session: Session, spec: JobSpec, body: dict[str, Any]) -> None:
    """Record the resolved init directory and the step count as the job's ``max_iters``."""
    assert spec.finetune is not None
    directory = init_dir(session, spec.finetune)
    if spec.data.source == "tokens" and spec.data.path is not None:
        tokens_read_by_model(spec.data.path, read_meta(directory), "finetune.init")
    body["finetune"]["init_dir"] = str(directory)
    body["max_iters"] = spec.finetune.steps


class FinetuneKind(JobKind):
    name = "finetune"
    runner: ClassVar[Runner] = "finetune"

    def check(self, spec: JobSpec, settings: Settings) -> None:
        super().check(spec, settings)
        check_finetune(spec, settings)

    def prepare(
        self, session: Session, spec: JobSpec, body: dict[str, Any], settings: Settings
    ) -> None:
        prepare_body(session, spec, body)

    def library_config(self, spec: JobSpec, out_dir: str, settings: Settings) -> Any:
        """The run config: its section, the resolved init directory and the top-level data,
        device, seed and threads."""
        from astropt.finetune import FinetuneConfig

        assert spec.finetune is not None
        section = spec.finetune.model_dump(mode="json", exclude={"init", "init_dir"})
        top = spec.model_dump(mode="json", include={"data", "device", "seed", "num_threads"})
        return FinetuneConfig.model_validate(
            {**section, **top, "init": spec.finetune.init_dir, "out_dir": out_dir}
        )

    def resume_body(
        self, body: dict[str, Any], target: int | None, done: str | None
    ) -> tuple[dict[str, Any], int]:
        resumed, steps = super().resume_body(body, target, done)
        resumed["finetune"] = {
            **resumed["finetune"],
            "steps": steps,
        }  # its steps live in its section
        return resumed, steps
