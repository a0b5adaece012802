"""``kind: embed``: a model over every galaxy of a data set into a catalogue. What its spec may
ask, the checkpoint its ``model`` names (resolved at submission, so the worker reads a
directory), and where the job writes its catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from astropt.checkpoints import read_meta
from astropt.run_dir import RunDir
from jobkinds.base import JobKind, ResumeFrom, Runner, require_one_process
from jobkinds.checkpoints import check_init_path, init_directory
from jobkinds.spec import JobSpec
from jobkinds.tokens_source import tokens_read_by_model
from state.errors import SpecInvalid
from state.settings import Settings


def catalogue_dir(out_dir: str | Path) -> Path:
    """Inside the job's out_dir: deleting the job deletes it (and its work directory of shards)."""
    return RunDir(Path(out_dir)).catalogue


def check_embed(spec: JobSpec, settings: Settings) -> None:
    """Bounds and paths of an embed spec (the database is not needed)."""
    section = spec.embed
    assert section is not None
    require_one_process(spec, "an embed job")
    if section.columns is not None and spec.data.source != "hf":
        raise SpecInvalid(
            "embed.columns",
            "embed.columns names the columns of an hf data set that ride along; "
            "a mock or local source keeps all its scalar columns",
        )
    for field, value, setting in (
        ("embed.batch_size", section.batch_size, "max_embed_batch_size"),
        ("embed.limit", section.limit or 0, "max_embed_objects"),
        ("data.n_mock", spec.data.n_mock if spec.data.source == "mock" else 0, "max_embed_objects"),
    ):
        limit = getattr(settings, setting)
        if value > limit:
            raise SpecInvalid(
                field,
                f"{field} ({value}) exceeds this service's limit of {limit} for embed "
                f"jobs (setting ASTROPT_{setting.upper()})",
            )
    check_init_path(section.model, "embed.model", settings)


def prepare_body(session: Session, spec: JobSpec, body: dict[str, Any], settings: Settings) -> None:
    """Record the resolved model directory, check the layer against the model, and count the
    galaxies (the job's ``max_iters``; a local source's true count is set when it starts)."""
    section = spec.embed
    assert section is not None
    directory = init_directory(session, section.model, "embed.model")
    meta = read_meta(directory)
    n_layer = int(meta["model_args"]["n_layer"])
    if not -n_layer <= section.layer < n_layer:
        raise SpecInvalid(
            "embed.layer",
            f"embed.layer ({section.layer}) must be in [{-n_layer}, {n_layer - 1}]: "
            f"the model has {n_layer} blocks",
        )
    body["embed"]["model_dir"] = str(directory)
    cap = min(section.limit or settings.max_embed_objects, settings.max_embed_objects)
    if spec.data.source == "tokens":
        assert spec.data.path is not None  # resolved from data.job_id, or sent
        count = tokens_read_by_model(spec.data.path, meta, "embed.model")
        body["max_iters"] = min(count, cap)
    else:  # hf: at most cap
        body["max_iters"] = min(spec.data.n_mock, cap) if spec.data.source == "mock" else cap


class EmbedKind(JobKind):
    name = "embed"
    runner: ClassVar[Runner] = "embed"
    resume_from: ClassVar[ResumeFrom] = "shards"  # continues after its last complete shard

    def check(self, spec: JobSpec, settings: Settings) -> None:
        super().check(spec, settings)
        check_embed(spec, settings)

    def prepare(
        self, session: Session, spec: JobSpec, body: dict[str, Any], settings: Settings
    ) -> None:
        prepare_body(session, spec, body, settings)

    def library_config(self, spec: JobSpec, out_dir: str, settings: Settings) -> Any:
        """The stored body itself: worker/embed_job.py reads its embed and data sections."""
        return spec.model_dump(mode="json")
