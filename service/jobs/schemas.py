"""API schemas (separate from the ORM models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jobkinds.spec import JobKindName as JobKind
from jobkinds.spec import JobSpec as ContractSpec

Phase = Literal["queued", "running", "completed", "failed", "cancelling", "cancelled"]

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

# What `astropt serve --demo` runs: a model of the shipped model's shape (2 layers, 64 wide) from
# random weights on the shipped codec, long enough for its validation loss to fall from
# ln 10000 = 9.2 to ~0.8 nats (the shipped model, 800 steps: 0.63) and its validation panels to
# turn from noise into galaxies; about 2 minutes on 2 CPU cores (benchmarks/bench_demo.py).
DEMO_JOB: dict[str, Any] = {
    "codec": "shipped",
    "model": {"n_layer": 2, "n_head": 4, "n_embd": 64, "block_size": 576},
    "data": {"source": "mock", "n_mock": 256, "val_fraction": 0.125},
    "batch_size": 8,
    "max_iters": 100,
    "eval_interval": 20,
    "eval_iters": 2,
    "log_interval": 5,
    "checkpoint_interval": 20,
    "n_val_images": 4,
    "optim": {"learning_rate": 0.005, "warmup_iters": 10, "weight_decay": 0.1, "grad_clip": 1.0},
    "device": "cpu",
}

# The shipped model trained on for a few steps: the first validation images and the job's
# checkpoint show galaxies from the start (the shipped-warm-start example).
WARM_START_JOB: dict[str, Any] = {
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
        "labels": ["mag_r", "g_r"],
        "task": "regression",
        "mode": "lora",
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "steps": 200,
        "lr": 0.003,
    },
}


EMBED_JOB: dict[str, Any] = {
    "kind": "embed",
    "data": {"source": "mock", "n_mock": 600, "mock_seed": 777},
    "device": "cpu",
    "embed": {"model": "shipped", "pool": "centre", "centre": 4, "layer": -1, "batch_size": 16},
}


class JobSpec(ContractSpec):
    """The training configuration of a job (the same schema as ``astropt train --config``).

    ``out_dir`` is chosen by the service (``<artifact root>/<job id>``); a value sent here is
    ignored.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [TINY_CPU_JOB, GPU_JOB, FINETUNE_JOB, WARM_START_JOB, EMBED_JOB]
        }
    )


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
        "description": 'init: \'shipped\' (the packaged model), {"job": ID, "checkpoint": "best"} '
        'of a training job, or {"path": DIR} of an imported checkpoint; /predict then answers '
        "with this job's predictions.",
        "value": FINETUNE_JOB,
    },
    "shipped-warm-start": {
        "summary": "Train on from the shipped model (about a minute on CPU)",
        "description": 'init_from: \'shipped\' (or {"job": ID, "checkpoint": "best"}, or '
        '{"path": DIR}): the model shape and codec are the checkpoint\'s, the optimiser and schedule '
        "start afresh; the step-0 validation loss is already the shipped model's (~0.65, not ln 10000).",
        "value": WARM_START_JOB,
    },
    "embed-mock": {
        "summary": "Embed 600 mock galaxies with the shipped model into a catalogue",
        "description": 'model: \'shipped\', {"job": ID, "checkpoint": "best"} or {"path": DIR}; '
        "then GET /catalogues/{id}, POST /catalogues/{id}/probe, POST /search.",
        "value": EMBED_JOB,
    },
}


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_iters: int | None = Field(
        None,
        ge=1,
        le=2**62,
        strict=True,
        description="New total iteration count (must exceed the checkpoint's step).",
        examples=[200],
    )


class Progress(BaseModel):
    iteration: int = Field(description="Last iteration reported by the training loop.")
    max_iters: int
    fraction: float = Field(description="iteration / max_iters")
    tokens_per_s: float | None = None
    eta_seconds: float | None = Field(None, description="Estimated seconds until max_iters.")
    mfu: float | None = Field(
        None,
        description="Model FLOPs utilisation (0-1); null when the "
        "device's peak is unknown (CPUs, GPUs outside the table).",
    )
    world_size: int = Field(1, description="Processes training the job.")
    effective_batch_size: int | None = Field(
        None, description="batch_size x grad_accum x world_size."
    )


class Curve(BaseModel):
    steps: list[int] = Field(default_factory=list)
    values: list[float] = Field(default_factory=list)


class Curves(BaseModel):
    train_loss: Curve = Field(
        default_factory=Curve, description="Training loss at logged iterations."
    )
    val_loss: Curve = Field(default_factory=Curve, description="Validation loss at evaluations.")
    lr: Curve = Field(default_factory=Curve, description="Learning rate at logged iterations.")
    tokens_per_s: Curve = Field(
        default_factory=Curve, description="Training throughput (all ranks)."
    )
    mfu: Curve = Field(
        default_factory=Curve, description="Model FLOPs utilisation (known GPUs only)."
    )
    effective_batch_size: Curve = Field(
        default_factory=Curve, description="Images per optimiser step."
    )
    probe_r2: dict[str, Curve] = Field(
        default_factory=dict,
        description="Live probe (spec `live_probe`): "
        "cross-validated ridge R² per label at evaluations; empty without one.",
    )
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
    owner: str | None = Field(
        None,
        description="The user who submitted it (none: the shared key, or a service without users).",
    )


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
    max_attempts: int = Field(
        description="Attempts a job gets before a job whose worker keeps dying "
        "is failed (ASTROPT_MAX_ATTEMPTS)."
    )
    interruptions: list[Interruption] = Field(
        default_factory=list,
        description="Attempts whose worker died (killed, out of memory, lost node).",
    )
    best_val_step: int | None = None
    resources: dict[str, Any] | None = Field(
        None,
        description="nodes, procs_per_node, world_size, effective_batch_size, executor, "
        "slurm_job_id / slurm_state (Slurm), group_restarts.",
    )
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
    path: str = Field(
        description="Relative to the run directory.", examples=["val_images/step_000020.png"]
    )
    size: int
    kind: Literal["checkpoint", "val_image", "log", "other"]
    download_url: str


class ArtifactList(BaseModel):
    job_id: str
    files: list[ArtifactFile]
    checkpoints: list[CheckpointOut]
