"""ORM models: jobs and their metric points."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

PHASES = ("queued", "running", "completed", "failed", "cancelling", "cancelled")
FINISHED_PHASES = ("completed", "failed", "cancelled")
ACTIVE_PHASES = ("queued", "running", "cancelling")
JOB_ID_LENGTH = 32  # uuid4().hex
TOP_LEVEL = 62  # metric_points.level of step 0


def step_level(step: int) -> int:
    """Trailing zero bits of ``step``: the multiples of 2**L are the points at level >= L."""
    if step <= 0:
        return TOP_LEVEL
    return min(TOP_LEVEL, (step & -step).bit_length() - 1)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC (SQLite keeps no time zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(JOB_ID_LENGTH), primary_key=True)
    phase: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    kind: Mapped[str] = mapped_column(
        String(16), index=True, default="train", server_default="train"
    )
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    out_dir: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    device: Mapped[str | None] = mapped_column(String(32), nullable=True)
    codec: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    n_params: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    iteration: Mapped[int] = mapped_column(BigInteger, default=0)
    max_iters: Mapped[int] = mapped_column(BigInteger)
    tokens_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    eta_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    best_val_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    best_val_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    checkpoints: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Distributed runs (issue 14): world size, effective batch, executor and its job id, why queued.
    resources: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    waiting_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    mfu: Mapped[float | None] = mapped_column(Float, nullable=True)
    gpu_memory_peak_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Attempts whose worker died: [{"attempt", "worker", "reason", "at"}] (state/store/recovery.py).
    interruptions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Set once the job's message is on the broker; a queued job without it is swept and re-published.
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The user who submitted it (state/store/users.py); None: before users, or the shared API key.
    submitted_by: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)

    metrics: Mapped[list[MetricPoint]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )


class MetricPoint(Base):
    __tablename__ = "metric_points"
    __table_args__ = (UniqueConstraint("job_id", "kind", "step", name="uq_metric_job_kind_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    step: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Float)
    # trailing zero bits of step (step 0: TOP_LEVEL): level >= L selects the multiples of 2**L
    level: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="metrics")


class CurveSummary(Base):
    """A bounded picture of one curve, kept in step with its points (state/store/summaries.py):
    its first, last and lowest points and every point at ``level`` or above (packed int64 steps
    and float64 values, at most ``summaries.CAPACITY``). A thinned curve is read from this row."""

    __tablename__ = "curve_summaries"
    __table_args__ = (PrimaryKeyConstraint("job_id", "kind", name="pk_curve_summaries"),)

    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    level: Mapped[int] = mapped_column(SmallInteger)
    first_step: Mapped[int] = mapped_column(BigInteger)
    first_value: Mapped[float] = mapped_column(Float)
    last_step: Mapped[int] = mapped_column(BigInteger)
    last_value: Mapped[float] = mapped_column(Float)
    lowest_step: Mapped[int] = mapped_column(BigInteger)
    lowest_value: Mapped[float] = mapped_column(Float)
    packed_steps: Mapped[bytes] = mapped_column(LargeBinary)
    packed_values: Mapped[bytes] = mapped_column(LargeBinary)


class WorkerNode(Base):
    """A training worker's advertised capacity, refreshed with its heartbeat."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(128))
    device_kind: Mapped[str] = mapped_column(String(8))  # "cuda" | "cpu"
    devices: Mapped[int] = mapped_column(Integer)  # processes one job may use on this worker
    free_devices: Mapped[int] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class User(Base):
    """A person or a script with a token. Only the token's SHA-256 is kept."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(64))  # comma-separated: read, submit, admin
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    max_active_jobs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    disk_quota_gb: Mapped[float | None] = mapped_column(Float, nullable=True)
    device_hours_quota: Mapped[float | None] = mapped_column(Float, nullable=True)


class AuditEntry(Base):
    """One mutating request: who, what, when, and how it was answered."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))
    status: Mapped[int] = mapped_column(Integer)
    target: Mapped[str | None] = mapped_column(String(64), nullable=True)
