"""The job contract: the body of ``POST /jobs`` as stored with the job and read by the worker.

One model for every kind (``kind`` picks which section applies; :mod:`jobkinds.registry`
holds each kind's rules). The service adds what it resolved at submission (``out_dir``,
``init_from_dir``, ``finetune.init_dir``, ``embed.model_dir``); the worker validates the
stored body with this same model and hands each kind's converter the typed result.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from astropt.config import TrainConfig
from astropt.finetune.config import FinetuneSettings
from astropt.pooling import DEFAULT_CENTRE, DEFAULT_POOL, Pool

JobKindName = Literal["train", "finetune", "embed", "tokenise"]
# Kinds whose settings are a section of their own, and how a refusal names that section.
SECTION_KINDS: dict[str, str] = {
    "finetune": "a finetune section (init, labels, ...)",
    "embed": "an embed section (model, pool, ...)",
    "tokenise": "a tokenise section (shard_size, limit, ...)",
}


class JobCheckpoint(BaseModel):
    """A checkpoint of a job of this service."""

    model_config = ConfigDict(extra="forbid")
    job: str = Field(pattern=r"^[0-9a-f]{1,32}$", description="Job id.")
    checkpoint: str = Field(
        "best", pattern=r"^(best|last|step_\d{1,9})$", description="best | last | step_NNNNNN"
    )


class CheckpointPath(BaseModel):
    """A checkpoint directory on the service's machine (e.g. from ``astropt import-upstream``)."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(
        max_length=4096, description="Inside the data directory or ASTROPT_DATA_ROOTS."
    )


class FinetuneSection(FinetuneSettings):
    """What a fine-tune job trains (``kind: finetune``); the top-level ``data``, ``device``,
    ``seed`` and ``num_threads`` apply, the rest of the top level is not read."""

    init: Literal["shipped"] | JobCheckpoint | CheckpointPath = Field(
        description="The checkpoint to start from: 'shipped', {job, checkpoint} or {path}."
    )
    init_dir: str | None = Field(
        None,
        description="Set by the service: the checkpoint directory "
        "init names (a value sent is replaced).",
    )


class EmbedSection(BaseModel):
    """What an embedding job computes (``kind: embed``): ``model`` over every galaxy of the
    top-level ``data`` (mock, local, or an hf data set read in order, streamed unless
    ``data.streaming`` is false, at most ``limit`` rows), into a catalogue (Parquet + manifest) in the job's
    directory. The top-level ``device`` and ``num_threads`` apply, the rest is not read."""

    model_config = ConfigDict(extra="forbid")
    model: Literal["shipped"] | JobCheckpoint | CheckpointPath = Field(
        description="The model: 'shipped', {job, checkpoint} of a job, or {path} of a checkpoint."
    )
    model_dir: str | None = Field(
        None,
        description="Set by the service: the checkpoint directory "
        "model names (a value sent is replaced).",
    )
    random_init: int | None = Field(
        None,
        ge=0,
        le=2**32 - 1,
        description="Embed with a freshly "
        "initialised model of the checkpoint's shape and codec, from this "
        "seed: the baseline a trained model must beat.",
    )
    pool: Pool = Field(
        DEFAULT_POOL,
        description="mean | last | centre (k x k central tokens, see "
        "centre). The default, centre 4 of the last block, is the recipe "
        "docs/science.md measured best.",
    )
    centre: int = Field(DEFAULT_CENTRE, ge=1, le=23, description="k of the centre pool.")
    layer: int = Field(
        -1,
        ge=-1024,
        le=1023,
        description="Block whose output is pooled, indexed like "
        "a Python list (-1: the last, after the final LayerNorm).",
    )
    batch_size: int = Field(
        16, ge=1, description="Galaxies per forward pass (ASTROPT_MAX_EMBED_BATCH_SIZE)."
    )
    limit: int | None = Field(
        None,
        ge=1,
        description="Embed at most the first N galaxies of the source "
        "(ASTROPT_MAX_EMBED_OBJECTS bounds every job).",
    )
    columns: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        None,
        max_length=256,
        description="data.source hf: the scalar columns of the data set that ride "
        "along into the catalogue (default: all). Mock and local sources keep all theirs.",
    )


class TokeniseSection(BaseModel):
    """What a tokenise job writes (``kind: tokenise``): every galaxy of the top-level ``data``
    (mock, local, or an hf data set, streamed unless ``data.streaming`` is false) through the
    top-level ``codec`` into a token data set in the job's directory (docs/data.md). The top-level
    ``device`` and ``num_threads`` apply; ``resources.procs_per_node`` ranks split the source."""

    model_config = ConfigDict(extra="forbid")
    shard_size: int = Field(4096, ge=16, le=1_000_000, description="Galaxies per shard file.")
    batch_size: int = Field(32, ge=1, le=4096, description="Galaxies per codec call.")
    num_workers: int = Field(
        2, ge=0, le=16, description="DataLoader processes decoding and cropping rows."
    )
    limit: int | None = Field(
        None,
        ge=1,
        le=1_000_000_000,
        description="Stop after this many galaxies (streams: else until the source is exhausted).",
    )
    columns: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list,
        max_length=256,
        description="Scalar columns of the source that ride along (e.g. mag_r, g_r).",
    )


class Resources(BaseModel):
    """What a job asks for. The world size is ``nodes * procs_per_node`` processes (ranks)."""

    model_config = ConfigDict(extra="forbid")
    nodes: int = Field(
        1, ge=1, le=4096, description="Nodes (more than 1 needs the Slurm executor)."
    )
    procs_per_node: int = Field(
        1,
        ge=1,
        le=1024,
        description="Processes per node: one per GPU, or CPU processes (gloo) on CPU.",
    )
    time_minutes: int | None = Field(
        None, ge=1, le=43200, description="Slurm: wall-time limit (sbatch --time)."
    )
    partition: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.,-]{1,64}$", description="Slurm partition."
    )
    account: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Slurm account."
    )

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node


class JobSpec(TrainConfig):
    """The training configuration of a job (the same schema as ``astropt train --config``).

    ``out_dir`` is chosen by the service (``<artifact root>/<job id>``); a value sent here is
    ignored.
    """

    # Not TrainConfig's type (a directory): the service's form, which train_config() turns into
    # the directory init_from_dir names; a JobSpec is never handed to the training loop as is.
    init_from: Literal["shipped"] | JobCheckpoint | CheckpointPath | None = Field(  # type: ignore[assignment]
        None,
        description="Warm start (kind 'train'): 'shipped', {job, checkpoint} or {path}; the "
        "run starts from its weights with a fresh optimiser and schedule at step 0. model fields "
        "left unset (and codec) are taken from the checkpoint; set ones must match it (422). "
        "null: random weights.",
    )
    init_from_dir: str | None = Field(
        None,
        description="Set by the service: the checkpoint directory "
        "init_from names (a value sent is replaced).",
    )
    kind: JobKindName = Field(
        "train",
        description="train: pretrain a model (the fields below); finetune: a "
        "task head on a checkpoint (the finetune section); embed: a model over a data "
        "set into a catalogue (the embed section).",
    )
    finetune: FinetuneSection | None = Field(None, description="Required for kind 'finetune'.")
    embed: EmbedSection | None = Field(None, description="Required for kind 'embed'.")
    tokenise: TokeniseSection | None = Field(None, description="Required for kind 'tokenise'.")
    resources: Resources = Field(
        default_factory=Resources,
        description="Processes and nodes; effective batch = batch_size x "
        "grad_accum x nodes x procs_per_node (the learning rate is not scaled).",
    )

    @model_validator(mode="after")
    def _check_kind(self) -> JobSpec:
        for (
            kind,
            section,
        ) in SECTION_KINDS.items():  # a kind with a section needs it; no other kind may carry it
            if self.kind == kind and getattr(self, kind) is None:
                raise ValueError(f"kind '{kind}' needs {section}")
            if self.kind != kind and getattr(self, kind) is not None:
                raise ValueError(f"{section.split(' (')[0]} needs kind '{kind}'")
        if self.kind != "train" and self.init_from is not None:
            raise ValueError(
                f"init_from is for kind 'train' (a {self.kind} job names its checkpoint in its section)"
            )
        return self

    def train_config(self) -> dict[str, Any]:
        """The part the training loop reads (``resources`` is the service's; ``init_from`` is
        the directory the service resolved)."""
        body = self.model_dump(
            mode="json", exclude={"resources", "kind", *SECTION_KINDS, "init_from_dir"}
        )
        body["init_from"] = self.init_from_dir
        return body
