"""Embedding jobs in the service layer: what a ``kind: embed`` spec may ask, the checkpoint its
``model`` names (resolved at submission, so the worker reads a directory), and where the job
writes its catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from astropt.checkpoints import read_meta
from astropt.run_dir import RunDir
from service.errors import SpecInvalid
from service.init_checkpoint import check_init_path, init_directory
from service.schemas import JobSpec
from state.settings import Settings


def catalogue_dir(out_dir: str | Path) -> Path:
    """Inside the job's out_dir: deleting the job deletes it (and its work directory of shards)."""
    return RunDir(Path(out_dir)).catalogue


def check_embed(spec: JobSpec, settings: Settings) -> None:
    """Bounds and paths of an embed spec (the database is not needed)."""
    section = spec.embed
    assert section is not None
    if spec.resources.world_size != 1:
        raise SpecInvalid("resources", "an embed job runs in one process: leave resources at 1 x 1")
    if section.columns is not None and spec.data.source != "hf":
        raise SpecInvalid("embed.columns", "embed.columns names the columns of an hf data set that ride along; "
                          "a mock or local source keeps all its scalar columns")
    for field, value, setting in (
        ("embed.batch_size", section.batch_size, "max_embed_batch_size"),
        ("embed.limit", section.limit or 0, "max_embed_objects"),
        ("data.n_mock", spec.data.n_mock if spec.data.source == "mock" else 0, "max_embed_objects"),
    ):
        limit = getattr(settings, setting)
        if value > limit:
            raise SpecInvalid(field, f"{field} ({value}) exceeds this service's limit of {limit} for embed "
                              f"jobs (setting ASTROPT_{setting.upper()})")
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
        raise SpecInvalid("embed.layer", f"embed.layer ({section.layer}) must be in [{-n_layer}, {n_layer - 1}]: "
                          f"the model has {n_layer} blocks")
    body["embed"]["model_dir"] = str(directory)
    cap = min(section.limit or settings.max_embed_objects, settings.max_embed_objects)
    body["max_iters"] = min(spec.data.n_mock, cap) if spec.data.source == "mock" else cap  # hf: at most cap
