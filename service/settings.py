"""Service and worker settings: one class, read from ``ASTROPT_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the API and the workers need to agree on.

    Defaults give the standalone mode: SQLite and a filesystem broker under ``data_dir``.
    """

    model_config = SettingsConfigDict(env_prefix="ASTROPT_", env_file=None, extra="ignore")

    data_dir: Path = Field(Path("./astropt-data"), description="Root for the database, broker and runs.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<data_dir>/astropt.db. "
        "PostgreSQL: postgresql+psycopg://user:pass@host:5432/db"
    )
    broker_url: str | None = Field(
        None, description="Celery broker URL, e.g. redis://host:6379/0; default: a filesystem "
        "broker under <data_dir>/broker (standalone mode, single machine)."
    )
    broker_visibility_timeout: int = Field(
        86400, ge=10, description="Redis: seconds before an unacknowledged message is redelivered "
        "(a backstop: workers requeue jobs whose heartbeat stopped after worker_lease_seconds)."
    )
    artifact_root: Path | None = Field(None, description="Run directories; default <data_dir>/runs.")
    api_key: SecretStr | None = Field(None, description="When set, mutating endpoints require it.")
    train_queue: str = Field("train", pattern=r"^[A-Za-z0-9_-]+$", description="Celery queue for training.")
    max_active_jobs: int = Field(100, ge=1, description="Queued + running jobs accepted at once.")
    max_iters_limit: int = Field(1_000_000, ge=1, description="Largest max_iters a job may ask for.")
    curve_max_points: int = Field(1000, ge=10, description="Points per curve before downsampling.")
    worker_checkpoint_interval: int = Field(
        200, ge=1, description="checkpoint_interval forced on jobs that leave it at 0."
    )
    keep_step_checkpoints: int = Field(
        3, ge=0, description="Periodic step_NNNNNN checkpoints kept per job (oldest pruned); 0 keeps all."
    )
    worker_lease_seconds: float = Field(
        60.0, gt=0, description="A running job whose heartbeat is older than this is orphaned."
    )
    cancel_poll_seconds: float = Field(1.0, gt=0, description="How often the loop asks the store.")
    events_poll_seconds: float = Field(1.0, gt=0, description="How often /events looks for news.")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'astropt.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

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
