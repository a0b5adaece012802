"""Inference settings, read from ``ASTROPT_INFERENCE_*`` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from astropt.inference.uploads import UploadLimits


class InferenceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASTROPT_INFERENCE_", env_file=None, extra="ignore")

    backend: Literal["local", "celery"] = Field(
        "local", description="local: compute in the API process; celery: send each request to the "
        "inference queue (workers: celery -A worker.inference:inference_app worker -Q inference)."
    )
    queue: str = Field("inference", pattern=r"^[A-Za-z0-9_-]+$", description="Celery inference queue.")
    broker_url: str | None = Field(None, description="Broker of the inference queue; default: the service's.")
    result_backend: str | None = Field(
        None, description="Celery result backend for backend=celery, e.g. redis://host:6379/1."
    )
    device: str = Field("auto", description="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1 ...")
    torch_threads: int | None = Field(
        None, ge=1, description="Intra-op threads of the one compute thread; default: "
        "OMP_NUM_THREADS when set, else all CPUs this process may use (one less above 4 CPUs)."
    )
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Model autocast precision. auto: bfloat16 on CUDA with bf16 support and on "
        "CPUs with native bf16 (AVX512-BF16/AMX), else float32. The codec always runs in float32."
    )
    max_batch_size: int | None = Field(
        None, ge=1, le=256, description="Images per model/codec call; default 4 on CPU (the model is "
        "compute-bound there: bigger batches only add latency), 32 on a GPU."
    )
    max_wait_ms: float = Field(
        2.0, ge=0.0, le=1000.0, description="How long the oldest request waits for others to batch with."
    )
    max_queue: int = Field(64, ge=1, description="Requests waiting before new ones get 503.")
    request_timeout_s: float = Field(120.0, gt=0, description="A request waiting longer gets 503.")
    max_models: int = Field(2, ge=1, description="Models kept loaded (LRU).")
    max_cache_mb: int = Field(2048, ge=1, description="Parameter memory of cached models + codecs.")
    max_concurrent_uploads: int = Field(
        8, ge=1, description="Uploads read and parsed at once (each may hold max_upload_mb + "
        "max_decompressed_mb in memory); more wait their turn."
    )
    max_upload_mb: float = Field(32.0, gt=0, description="Largest upload accepted (413 beyond).")
    max_decompressed_mb: float = Field(256.0, gt=0, description="Largest inflated image data.")
    max_side: int = Field(4096, ge=96, description="Largest image side in pixels.")
    max_nonfinite_fraction: float = Field(0.5, ge=0.0, le=1.0)

    def upload_limits(self) -> UploadLimits:
        return UploadLimits(
            max_upload_bytes=int(self.max_upload_mb * 2**20),
            max_decompressed_bytes=int(self.max_decompressed_mb * 2**20),
            max_side=self.max_side,
            max_nonfinite_fraction=self.max_nonfinite_fraction,
        )
