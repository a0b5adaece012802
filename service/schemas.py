"""API schemas (separate from the ORM models)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from astropt.config import TrainConfig
from astropt.finetune.config import FinetuneSettings
from astropt.pooling import DEFAULT_CENTRE, DEFAULT_POOL, Pool

Phase = Literal["queued", "running", "completed", "failed", "cancelling", "cancelled"]
JobKind = Literal["train", "finetune", "embed"]

TINY_CPU_JOB: dict[str, Any] = {
    "codec": "shipped",
    "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 576},
    "data": {"source": "mock", "n_mock": 64, "val_fraction": 0.125},
    "batch_size": 4,
    "max_iters": 100,
    "eval_interval": 20,
    "eval_iters": 2,
    "log_interval": 2,
    "checkpoint_interval": 20,
    "n_val_images": 4,
    "optim": {"learning_rate": 0.003, "warmup_iters": 10},
    "device": "cpu",
}

# What `astropt serve --demo` runs: the shipped model (its shape and codec) trained on for a few
# steps, so the first validation images and the job's checkpoint show galaxies, not sky.
DEMO_JOB: dict[str, Any] = {
    "init_from": "shipped",
    "data": {"source": "mock", "n_mock": 64, "val_fraction": 0.125},
    "batch_size": 4,
    "max_iters": 40,
    "eval_interval": 20,
    "eval_iters": 2,
    "log_interval": 2,
    "checkpoint_interval": 20,
    "n_val_images": 4,
    "optim": {"learning_rate": 0.0003, "warmup_iters": 10},
    "device": "cpu",
}

GPU_JOB: dict[str, Any] = {
    "codec": "polymathic-ai/aion-base",
    "model": {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024},
    "data": {
        "source": "hf",
        "hf_dataset": "Smith42/legacysurvey_hsc_crossmatched",
        "image_column": "legacysurvey_image",
        "streaming": True,
    },
    "batch_size": 16,
    "grad_accum": 5,
    "max_iters": 30000,
    "eval_interval": 1000,
    "eval_iters": 50,
    "log_interval": 10,
    "checkpoint_interval": 1000,
    "optim": {"learning_rate": 0.0003, "min_lr": 0.00003, "warmup_iters": 2000},
    "device": "auto",
    "dtype": "auto",
    "compile": "auto",
}


FINETUNE_JOB: dict[str, Any] = {
    "kind": "finetune",
    "data": {"source": "mock", "n_mock": 512},
    "device": "cpu",
    "finetune": {
        "init": "shipped",
        "labels": ["mag_r", "g_r"], "task": "regression", "mode": "lora",
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0}, "steps": 200, "lr": 0.003,
    },
}


class JobCheckpoint(BaseModel):
    """A checkpoint of a job of this service."""

    model_config = ConfigDict(extra="forbid")
    job: str = Field(pattern=r"^[0-9a-f]{1,32}$", description="Job id.")
    checkpoint: str = Field("best", pattern=r"^(best|last|step_\d{1,9})$", description="best | last | step_NNNNNN")


class CheckpointPath(BaseModel):
    """A checkpoint directory on the service's machine (e.g. from ``astropt import-upstream``)."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(max_length=4096, description="Inside the data directory or ASTROPT_DATA_ROOTS.")


class FinetuneSection(FinetuneSettings):
    """What a fine-tune job trains (``kind: finetune``); the top-level ``data``, ``device``,
    ``seed`` and ``num_threads`` apply, the rest of the top level is not read."""

    init: Literal["shipped"] | JobCheckpoint | CheckpointPath = Field(
        description="The checkpoint to start from: 'shipped', {job, checkpoint} or {path}.")
    init_dir: str | None = Field(None, description="Set by the service: the checkpoint directory "
                                 "init names (a value sent is replaced).")


EMBED_JOB: dict[str, Any] = {
    "kind": "embed",
    "data": {"source": "mock", "n_mock": 600, "mock_seed": 777},
    "device": "cpu",
    "embed": {"model": "shipped", "pool": "centre", "centre": 4, "layer": -1, "batch_size": 16},
}


class EmbedSection(BaseModel):
    """What an embedding job computes (``kind: embed``): ``model`` over every galaxy of the
    top-level ``data`` (mock, local, or an hf data set read in order, streamed unless
    ``data.streaming`` is false, at most ``limit`` rows), into a catalogue (Parquet + manifest) in the job's
    directory. The top-level ``device`` and ``num_threads`` apply, the rest is not read."""

    model_config = ConfigDict(extra="forbid")
    model: Literal["shipped"] | JobCheckpoint | CheckpointPath = Field(
        description="The model: 'shipped', {job, checkpoint} of a job, or {path} of a checkpoint.")
    model_dir: str | None = Field(None, description="Set by the service: the checkpoint directory "
                                  "model names (a value sent is replaced).")
    random_init: int | None = Field(None, ge=0, le=2**32 - 1, description="Embed with a freshly "
                                    "initialised model of the checkpoint's shape and codec, from this "
                                    "seed: the baseline a trained model must beat.")
    pool: Pool = Field(DEFAULT_POOL, description="mean | last | centre (k x k central tokens, see "
                       "centre). The default, centre 4 of the last block, is the recipe "
                       "docs/science.md measured best.")
    centre: int = Field(DEFAULT_CENTRE, ge=1, le=23, description="k of the centre pool.")
    layer: int = Field(-1, ge=-1024, le=1023, description="Block whose output is pooled, indexed like "
                       "a Python list (-1: the last, after the final LayerNorm).")
    batch_size: int = Field(16, ge=1, description="Galaxies per forward pass (ASTROPT_MAX_EMBED_BATCH_SIZE).")
    limit: int | None = Field(None, ge=1, description="Embed at most the first N galaxies of the source "
                              "(ASTROPT_MAX_EMBED_OBJECTS bounds every job).")
    columns: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        None, max_length=256, description="data.source hf: the scalar columns of the data set that ride "
        "along into the catalogue (default: all). Mock and local sources keep all theirs.")


class Resources(BaseModel):
    """What a job asks for. The world size is ``nodes * procs_per_node`` processes (ranks)."""

    model_config = ConfigDict(extra="forbid")
    nodes: int = Field(1, ge=1, le=4096, description="Nodes (more than 1 needs the Slurm executor).")
    procs_per_node: int = Field(
        1, ge=1, le=1024, description="Processes per node: one per GPU, or CPU processes (gloo) on CPU."
    )
    time_minutes: int | None = Field(None, ge=1, le=43200, description="Slurm: wall-time limit (sbatch --time).")
    partition: str | None = Field(None, pattern=r"^[A-Za-z0-9_.,-]{1,64}$", description="Slurm partition.")
    account: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Slurm account.")

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node


class JobSpec(TrainConfig):
    """The training configuration of a job (the same schema as ``astropt train --config``).

    ``out_dir`` is chosen by the service (``<artifact root>/<job id>``); a value sent here is
    ignored.
    """

    model_config = ConfigDict(json_schema_extra={"examples": [TINY_CPU_JOB, GPU_JOB, FINETUNE_JOB, DEMO_JOB,
                                                              EMBED_JOB]})

    init_from: Literal["shipped"] | JobCheckpoint | CheckpointPath | None = Field(
        None, description="Warm start (kind 'train'): 'shipped', {job, checkpoint} or {path}; the "
        "run starts from its weights with a fresh optimiser and schedule at step 0. model fields "
        "left unset (and codec) are taken from the checkpoint; set ones must match it (422). "
        "null: random weights.")
    init_from_dir: str | None = Field(None, description="Set by the service: the checkpoint directory "
                                      "init_from names (a value sent is replaced).")
    kind: JobKind = Field("train", description="train: pretrain a model (the fields below); finetune: a "
                          "task head on a checkpoint (the finetune section); embed: a model over a data "
                          "set into a catalogue (the embed section).")
    finetune: FinetuneSection | None = Field(None, description="Required for kind 'finetune'.")
    embed: EmbedSection | None = Field(None, description="Required for kind 'embed'.")
    resources: Resources = Field(
        default_factory=Resources, description="Processes and nodes; effective batch = batch_size x "
        "grad_accum x nodes x procs_per_node (the learning rate is not scaled)."
    )

    @model_validator(mode="after")
    def _check_kind(self) -> JobSpec:
        if self.kind == "finetune" and self.finetune is None:
            raise ValueError("kind 'finetune' needs a finetune section (init, labels, ...)")
        if self.kind != "finetune" and self.finetune is not None:
            raise ValueError("a finetune section needs kind 'finetune'")
        if self.kind != "train" and self.init_from is not None:
            raise ValueError(f"init_from is for kind 'train' (a {self.kind} job names its checkpoint in its section)")
        if self.kind == "embed" and self.embed is None:
            raise ValueError("kind 'embed' needs an embed section (model, pool, ...)")
        if self.kind != "embed" and self.embed is not None:
            raise ValueError("an embed section needs kind 'embed'")
        return self

    def train_config(self) -> dict[str, Any]:
        """The part the training loop reads (``resources`` is the service's; ``init_from`` is
        the directory the service resolved)."""
        body = self.model_dump(mode="json", exclude={"resources", "kind", "finetune", "embed", "init_from_dir"})
        body["init_from"] = self.init_from_dir
        return body


JOB_SPEC_EXAMPLES: dict[str, dict[str, Any]] = {
    "tiny-cpu": {
        "summary": "Tiny CPU job on the embedded mock (about a minute)",
        "description": "A 1-layer model on 64 mock galaxies with an untrained random codec: "
        "shows a falling loss curve quickly on any machine.",
        "value": TINY_CPU_JOB,
    },
    "gpu-aion-base": {
        "summary": "Realistic GPU job: 12x768 GPT on aion-base tokens of the Legacy Survey",
        "value": GPU_JOB,
    },
    "finetune-lora": {
        "summary": "Fine-tune a checkpoint with LoRA to predict mock r magnitude and g-r",
        "description": "init: 'shipped' (the packaged model), {\"job\": ID, \"checkpoint\": \"best\"} "
        "of a training job, or {\"path\": DIR} of an imported checkpoint; /predict then answers "
        "with this job's predictions.",
        "value": FINETUNE_JOB,
    },
    "shipped-warm-start": {
        "summary": "Train on from the shipped model (what `astropt serve --demo` runs, a few minutes on CPU)",
        "description": "init_from: 'shipped' (or {\"job\": ID, \"checkpoint\": \"best\"}, or "
        "{\"path\": DIR}): the model shape and codec are the checkpoint's, the optimiser and schedule "
        "start afresh; the step-0 validation loss is already the shipped model's (~0.65, not ln 10000).",
        "value": DEMO_JOB,
    },
    "embed-mock": {
        "summary": "Embed 600 mock galaxies with the shipped model into a catalogue",
        "description": "model: 'shipped', {\"job\": ID, \"checkpoint\": \"best\"} or {\"path\": DIR}; "
        "then GET /catalogues/{id}, POST /catalogues/{id}/probe, POST /search.",
        "value": EMBED_JOB,
    },
}


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_iters: int | None = Field(
        None, ge=1, le=2**62, strict=True, description="New total iteration count (must exceed the checkpoint's step).",
        examples=[200],
    )


class Progress(BaseModel):
    iteration: int = Field(description="Last iteration reported by the training loop.")
    max_iters: int
    fraction: float = Field(description="iteration / max_iters")
    tokens_per_s: float | None = None
    eta_seconds: float | None = Field(None, description="Estimated seconds until max_iters.")
    mfu: float | None = Field(None, description="Model FLOPs utilisation (0-1); null when the "
                              "device's peak is unknown (CPUs, GPUs outside the table).")
    world_size: int = Field(1, description="Processes training the job.")
    effective_batch_size: int | None = Field(None, description="batch_size x grad_accum x world_size.")


class Curve(BaseModel):
    steps: list[int] = Field(default_factory=list)
    values: list[float] = Field(default_factory=list)


class Curves(BaseModel):
    train_loss: Curve = Field(default_factory=Curve, description="Training loss at logged iterations.")
    val_loss: Curve = Field(default_factory=Curve, description="Validation loss at evaluations.")
    lr: Curve = Field(default_factory=Curve, description="Learning rate at logged iterations.")
    tokens_per_s: Curve = Field(default_factory=Curve, description="Training throughput (all ranks).")
    mfu: Curve = Field(default_factory=Curve, description="Model FLOPs utilisation (known GPUs only).")
    effective_batch_size: Curve = Field(default_factory=Curve, description="Images per optimiser step.")
    probe_r2: dict[str, Curve] = Field(default_factory=dict, description="Live probe (spec `live_probe`): "
                                       "cross-validated ridge R² per label at evaluations; empty without one.")
    since: int | None = Field(None, description="Only points with step > since are included.")
    downsampled: bool = Field(False, description="True when a long curve was thinned.")


class CheckpointOut(BaseModel):
    name: str = Field(examples=["best"])
    kind: str = Field(description="best | last | step")
    step: int
    created_at: datetime | None = None
    download_url: str = Field(description="Zip of the checkpoint directory.")


class Links(BaseModel):
    self: str
    loss_png: str
    events: str
    artifacts: str


class JobSummary(BaseModel):
    id: str
    kind: JobKind = "train"
    phase: Phase
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: Progress
    best_val_loss: float | None = None
    failure_reason: str | None = None


class Interruption(BaseModel):
    attempt: int = Field(description="The attempt (1, 2, ...) that was cut short.")
    worker: str | None = Field(None, description="The worker that held the job.")
    reason: str = Field(examples=["lost heartbeat"])
    at: datetime


class JobOut(JobSummary):
    updated_at: datetime
    spec: dict[str, Any] = Field(description="The validated training configuration.")
    device: str | None = None
    codec: dict[str, Any] | None = Field(None, description="Codec spec, source and fingerprint.")
    n_params: int | None = None
    attempts: int = Field(description="Times a worker started (or resumed) this job.")
    max_attempts: int = Field(description="Attempts a job gets before a job whose worker keeps dying "
                              "is failed (ASTROPT_MAX_ATTEMPTS).")
    interruptions: list[Interruption] = Field(
        default_factory=list, description="Attempts whose worker died (killed, out of memory, lost node).")
    best_val_step: int | None = None
    resources: dict[str, Any] | None = Field(
        None, description="nodes, procs_per_node, world_size, effective_batch_size, executor, "
        "slurm_job_id / slurm_state (Slurm), group_restarts.")
    waiting_reason: str | None = Field(None, description="Why a queued job has not started yet.")
    gpu_memory_peak_bytes: int | None = Field(None, description="Peak GPU memory of rank 0.")
    curves: Curves
    checkpoints: list[CheckpointOut] = Field(default_factory=list)
    links: Links


class JobList(BaseModel):
    items: list[JobSummary]
    total: int
    limit: int
    offset: int


class ArtifactFile(BaseModel):
    path: str = Field(description="Relative to the run directory.", examples=["val_images/step_000020.png"])
    size: int
    kind: Literal["checkpoint", "val_image", "log", "other"]
    download_url: str


class ArtifactList(BaseModel):
    job_id: str
    files: list[ArtifactFile]
    checkpoints: list[CheckpointOut]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: str = Field(examples=["ok"])
    broker: str = Field(examples=["ok"])
    version: str


class ErrorOut(BaseModel):
    detail: str = Field(examples=["job 0123abcd not found"])


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(examples=[["body", "model", "n_embd"]])
    field: str = Field(description="Dotted field path.", examples=["model.n_embd"])
    msg: str = Field(examples=["n_embd (30) must be divisible by n_head (4); try n_embd=32"])
    type: str = Field(examples=["value_error"])


class ValidationErrorOut(BaseModel):
    detail: list[ValidationIssue]
