"""Service and worker settings, read from ``ASTROPT_*`` (and ``ASTROPT_INFERENCE_*``) variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:  # light at import time: the worker's main process never imports torch
    from astropt.inference.limits import UploadLimits
    from astropt.serving.runtime import RuntimeConfig
    from broker import BrokerConfig


class Settings(BaseSettings):
    """Everything the API and the workers need to agree on.

    Defaults give the standalone mode: SQLite and a filesystem broker under ``data_dir``.
    """

    model_config = SettingsConfigDict(env_prefix="ASTROPT_", env_file=None, extra="ignore")

    data_dir: Path = Field(
        Path("./astropt-data"), description="Root for the database, broker and runs."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default sqlite:///<data_dir>/astropt.db. "
        "PostgreSQL: postgresql+psycopg://user:pass@host:5432/db",
    )
    broker_url: str | None = Field(
        None,
        description="Celery broker URL, e.g. redis://host:6379/0; default: a filesystem "
        "broker under <data_dir>/broker (standalone mode, single machine).",
    )
    broker_visibility_timeout: int = Field(
        86400,
        ge=10,
        description="Redis: seconds before an unacknowledged message is redelivered "
        "(a backstop: workers requeue jobs whose heartbeat stopped after worker_lease_seconds).",
    )
    artifact_root: Path | None = Field(
        None, description="Run directories; default <data_dir>/runs."
    )
    api_key: SecretStr | None = Field(None, description="When set, mutating endpoints require it.")
    public_reads: bool = Field(
        False,
        description="Once users exist, let anyone read (list and inspect "
        "jobs and catalogues) without a token; writes still need one.",
    )
    users_cache_seconds: float = Field(
        2.0,
        ge=0,
        le=60,
        description="How long the API trusts its "
        "last look at whether users exist (a new user takes effect after it).",
    )
    train_queue: str = Field(
        "train", pattern=r"^[A-Za-z0-9_-]+$", description="Celery queue for training."
    )
    max_active_jobs: int = Field(100, ge=1, description="Queued + running jobs accepted at once.")
    max_iters_limit: int = Field(
        1_000_000, ge=1, description="Largest max_iters a job may ask for."
    )
    curve_max_points: int = Field(1000, ge=10, description="Points per curve before downsampling.")
    worker_checkpoint_interval: int = Field(
        200, ge=1, description="checkpoint_interval forced on jobs that leave it at 0."
    )
    keep_step_checkpoints: int = Field(
        3,
        ge=0,
        description="Periodic step_NNNNNN checkpoints kept per job (oldest pruned); 0 keeps all.",
    )
    worker_lease_seconds: float = Field(
        60.0, gt=0, description="A running job whose heartbeat is older than this is orphaned."
    )
    worker_preload: bool = Field(
        True,
        description="The training worker imports torch and the training code once, at start-up, so "
        "that each job's fresh pool process starts warm (about 4 s sooner on a CPU); nothing "
        "touches CUDA before a job's own process does.",
    )
    worker_store_outage_seconds: float = Field(
        300.0,
        gt=0,
        description="A training run keeps its metric writes while the database is "
        "unreachable and applies them when it is back; past this it stops and later resumes from its "
        "last checkpoint.",
    )
    cancel_poll_seconds: float = Field(1.0, gt=0, description="How often the loop asks the store.")
    docs_enabled: bool = Field(
        True,
        description="Serve /docs (Swagger UI), /redoc and /openapi.json; false hides them in production.",
    )
    events_poll_seconds: float = Field(1.0, gt=0, description="How often /events looks for news.")
    max_event_streams: int = Field(
        64,
        ge=1,
        description="Live GET /jobs/{id}/events streams open at once per API process; "
        "beyond, 503 with Retry-After (each polls the store every events_poll_seconds).",
    )

    # -- hardening: what a job may touch and ask for (see docs/operations.md, "Security") --
    data_roots: list[Path] = Field(
        default_factory=list,
        description="Extra read-only directories a job's data.path (source "
        "local) or codec may name, as a JSON list: '[\"/data/legacy\"]'. Jobs write only under data_dir.",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        le=100,
        description="Times a job is started before a job whose worker keeps dying is failed.",
    )
    max_batch_size: int = Field(1024, ge=1, description="Largest batch_size a job may ask for.")
    max_grad_accum: int = Field(1024, ge=1, description="Largest grad_accum a job may ask for.")
    max_tokens_per_step: int = Field(
        8192 * 575,
        ge=575,
        description="Largest batch_size x grad_accum x 575 tokens per optimiser step.",
    )
    max_n_mock: int = Field(100_000, ge=8, description="Largest mock data set (data.n_mock).")
    max_eval_iters: int = Field(1000, ge=1, description="Largest eval_iters.")
    max_num_threads: int = Field(256, ge=1, description="Largest num_threads.")
    max_model_params: int = Field(
        2_000_000_000, ge=1, description="Largest model (parameters) a job may build."
    )
    max_train_memory_mb: float = Field(
        32768.0,
        gt=0,
        description="Memory one training process may need by the service's estimate "
        "(float32 weights, gradients and AdamW state, plus the activations of one micro-batch); "
        "set it to your GPUs' (or workers') memory.",
    )
    max_block_size: int = Field(8192, ge=576, description="Largest model.block_size.")
    max_n_layer: int = Field(96, ge=1, description="Largest model.n_layer.")
    max_n_embd: int = Field(16384, ge=8, description="Largest model.n_embd.")
    max_learning_rate: float = Field(
        10.0, gt=0, description="Largest optim.learning_rate and optim.min_lr."
    )
    max_weight_decay: float = Field(10.0, ge=0, description="Largest optim.weight_decay.")
    max_grad_clip: float = Field(1e6, gt=0, description="Largest optim.grad_clip.")
    max_shuffle_buffer: int = Field(1_000_000, ge=1, description="Largest data.shuffle_buffer.")
    max_live_probe_galaxies: int = Field(
        4096,
        ge=10,
        description="Largest live_probe.n_galaxies (galaxies "
        "embedded and probed at each probed evaluation).",
    )
    max_json_body_bytes: int = Field(
        1 << 20, ge=1024, description="Largest JSON body (POST /jobs)."
    )
    # Embedding jobs and catalogues (docs/science.md, "In the service")
    disk_budget_gb: float | None = Field(
        None,
        gt=0,
        description="Most disk the data directory may use (runs, token data sets and caches, "
        "mock sets); a job whose estimated output would pass it is refused (422 naming this setting "
        "and the estimate). Unset: no budget.",
    )
    max_checkpoints_per_job: int = Field(
        10_000,
        ge=1,
        description="Most checkpoints one job may write over its run (max_iters / "
        "checkpoint_interval); older step checkpoints are pruned, but each costs a full write.",
    )
    max_tokenise_objects: int = Field(
        10_000_000,
        ge=8,
        description="Most galaxies one tokenise job may "
        "write (tokenise.limit; an unbounded stream stops here).",
    )
    max_embed_objects: int = Field(
        100_000,
        ge=8,
        description="Most galaxies one embed job may embed "
        "(data.n_mock, embed.limit; a local source is cut there).",
    )
    max_embed_batch_size: int = Field(512, ge=1, description="Largest embed.batch_size.")
    embed_shard_rows: int = Field(
        1024,
        ge=1,
        description="Rows per shard an embed job writes as it goes "
        "(a restarted job continues after its last complete shard).",
    )
    max_search_k: int = Field(100, ge=1, description="Most neighbours POST /search returns (k).")
    max_outliers: int = Field(
        1000, ge=1, description="Most outliers GET /catalogues/{id}/outliers returns (n)."
    )
    max_umap_objects: int = Field(
        50_000,
        ge=10,
        description="Largest catalogue GET /catalogues/{id}/map.png "
        "maps with UMAP (it takes minutes beyond); PCA has no limit.",
    )
    max_probe_labels: int = Field(32, ge=1, description="Most labels one probe request names.")
    max_probe_folds: int = Field(20, ge=2, description="Most cross-validation folds of a probe.")
    max_probe_bootstrap: int = Field(2000, ge=0, description="Most bootstrap draws of a probe.")
    max_concurrent_science: int = Field(
        2,
        ge=1,
        description="Probes, maps and searches computed at once by one API process (more get 429).",
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0, description="Time a client has to send a request body (slow clients get 408)."
    )
    broker_timeout_seconds: float = Field(
        5.0, gt=0, description="Connect/read timeout of broker calls."
    )
    database_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="PostgreSQL: connect, statement, pool-wait and TCP timeout of every database call.",
    )

    # Distributed jobs (docs/operations.md#scaling)
    executor: Literal["celery", "slurm"] = Field(
        "celery",
        description="Who runs jobs: Celery workers (one node each) or Slurm (sbatch, several nodes).",
    )
    worker_devices: int = Field(
        0,
        ge=0,
        le=1024,
        description="Processes one job may use on this worker: its GPUs, or CPU "
        "processes (gloo) on a machine without GPUs; 0 = all visible GPUs, else the CPU cores.",
    )
    distributed_max_restarts: int = Field(
        2,
        ge=0,
        le=100,
        description="torchrun restarts of a process group after a rank dies "
        "(each resumes from checkpoints/last).",
    )
    slurm_partition: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.,-]+$", description="sbatch --partition."
    )
    slurm_account: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]+$", description="sbatch --account."
    )
    slurm_time_minutes: int = Field(
        60, ge=1, le=43200, description="sbatch --time when a job gives none."
    )
    slurm_max_nodes: int = Field(1, ge=1, le=4096, description="Most nodes a job may ask for.")
    slurm_procs_per_node: int = Field(
        1,
        ge=1,
        le=1024,
        description="Processes (GPUs) one node offers; the most a job may ask for per node.",
    )
    slurm_gpus: bool = Field(
        False, description="Request GPUs (--gpus-per-node) and run NCCL; else CPU + gloo."
    )
    slurm_python: str | None = Field(
        None, description="Python on the compute nodes (default: this one, sys.executable)."
    )
    slurm_poll_seconds: float = Field(5.0, gt=0, description="How often squeue/sacct are asked.")

    @property
    def readable_roots(self) -> list[Path]:
        """Where a job may read data: the data directory and the configured read-only roots."""
        return [self.data_dir.resolve(), *(root.expanduser().resolve() for root in self.data_roots)]

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'astropt.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return (
            self.broker_url or "filesystem://localhost/"
        )  # (a host name: kombu warns without one)

    @property
    def runs_dir(self) -> Path:
        return (self.artifact_root or self.data_dir / "runs").resolve()

    @property
    def broker_dir(self) -> Path:
        return (self.data_dir / "broker").resolve()

    def broker_transport_options(self) -> dict[str, object]:
        url = self.resolved_broker_url
        if url.startswith("filesystem"):
            folder = str(self.broker_dir / "queue")
            return {
                "data_folder_in": folder,
                "data_folder_out": folder,
                "processed_folder": str(self.broker_dir / "processed"),
                "control_folder": str(self.broker_dir / "control"),
                "store_processed": False,
            }
        if url.startswith(("redis", "rediss")):
            return {"visibility_timeout": self.broker_visibility_timeout}
        return {}

    def broker_config(self) -> BrokerConfig:
        """The training queue's broker, with this service's timeouts on every call."""
        from broker import BrokerConfig

        return BrokerConfig(
            self.resolved_broker_url, self.broker_transport_options(), self.broker_timeout_seconds
        )

    @property
    def uses_filesystem_broker(self) -> bool:
        return self.resolved_broker_url.startswith("filesystem")

    def ensure_dirs(self) -> None:
        """Create the data, runs and (standalone) broker directories."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        if self.uses_filesystem_broker:
            (self.broker_dir / "queue").mkdir(parents=True, exist_ok=True)
            (self.broker_dir / "processed").mkdir(parents=True, exist_ok=True)
            (self.broker_dir / "control").mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


class InferenceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ASTROPT_INFERENCE_", env_file=None, extra="ignore"
    )

    backend: Literal["local", "celery"] = Field(
        "local",
        description="local: compute in the API process; celery: send each request to the "
        "inference queue (workers: celery -A worker.inference:inference_app worker -Q inference).",
    )
    queue: str = Field(
        "inference", pattern=r"^[A-Za-z0-9_-]+$", description="Celery inference queue."
    )
    broker_url: str | None = Field(
        None, description="Broker of the inference queue; default: the service's."
    )
    result_backend: str | None = Field(
        None, description="Celery result backend for backend=celery, e.g. redis://host:6379/1."
    )
    device: str = Field(
        "auto", description="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1 ..."
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="Intra-op threads of the one compute thread; default: "
        "OMP_NUM_THREADS when set, else all CPUs this process may use (one less above 4 CPUs).",
    )
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Model autocast precision. auto: bfloat16 on CUDA with bf16 support and on "
        "CPUs with native bf16 (AVX512-BF16/AMX), else float32. The codec always runs in float32.",
    )
    max_batch_size: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Images per model/codec call; default 4 on CPU (the model is "
        "compute-bound there: bigger batches only add latency), 32 on a GPU.",
    )
    max_wait_ms: float = Field(
        2.0,
        ge=0.0,
        le=1000.0,
        description="How long the oldest request waits for others to batch with.",
    )
    max_queue: int = Field(64, ge=1, description="Requests waiting before new ones get 503.")
    max_queued_mb: float = Field(
        64.0,
        gt=0,
        description="Image memory of the requests waiting for the engine (each holds its "
        "96x96 crop, 147 KiB for 4 bands) before new ones get 503 with Retry-After.",
    )
    request_timeout_s: float = Field(120.0, gt=0, description="A request waiting longer gets 503.")
    max_models: int = Field(2, ge=1, description="Models kept loaded (LRU).")
    max_cache_mb: int = Field(2048, ge=1, description="Parameter memory of cached models + codecs.")
    max_concurrent_uploads: int = Field(
        8,
        ge=1,
        description="Uploads read and parsed at once (each may hold max_upload_mb + "
        "max_decompressed_mb in memory); more wait their turn.",
    )
    max_waiting_uploads: int = Field(
        64,
        ge=0,
        description="Uploads waiting for a parse slot before new ones get 429 with Retry-After.",
    )
    max_upload_mb: float = Field(32.0, gt=0, description="Largest upload accepted (413 beyond).")
    max_decompressed_mb: float = Field(256.0, gt=0, description="Largest inflated image data.")
    max_inflating_mb: float = Field(
        512.0,
        gt=0,
        description="Inflated gzip data held at once by all uploads of the process (a "
        "bomb is counted, not held, and refused with 413); uploads beyond wait, then get 503.",
    )
    max_side: int = Field(4096, ge=96, description="Largest image side in pixels.")
    max_nonfinite_fraction: float = Field(0.5, ge=0.0, le=1.0)

    def upload_limits(self) -> UploadLimits:
        from astropt.inference.limits import UploadLimits

        return UploadLimits(
            max_upload_bytes=int(self.max_upload_mb * 2**20),
            max_decompressed_bytes=int(self.max_decompressed_mb * 2**20),
            max_inflating_bytes=int(self.max_inflating_mb * 2**20),
            max_side=self.max_side,
            max_nonfinite_fraction=self.max_nonfinite_fraction,
        )

    def runtime_config(self) -> RuntimeConfig:
        from astropt.serving.runtime import RuntimeConfig

        return RuntimeConfig(
            self.device, self.torch_threads, self.precision, self.max_models, self.max_cache_mb
        )

    def broker(self, service: Settings) -> BrokerConfig:
        """The inference queue's broker: its own URL when set, else the service's."""
        from broker import BrokerConfig

        if self.broker_url:
            return BrokerConfig(self.broker_url, timeout_seconds=service.broker_timeout_seconds)
        return service.broker_config()


@lru_cache(maxsize=1)
def get_inference_settings() -> InferenceSettings:
    return InferenceSettings()
