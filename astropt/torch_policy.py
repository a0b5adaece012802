"""How this project uses torch: device choice, precision, TF32 and intra-op threads.

Training (``astropt.training.runtime``), inference (``astropt.serving.runtime``) and codec
training all take these decisions from here, so a device/precision rule is written once.
"""

from __future__ import annotations

import contextlib
import os
from typing import Literal

import torch

InferencePrecision = Literal["auto", "float32", "bfloat16"]
TrainDtype = Literal["auto", "float32", "bfloat16", "float16"]


def choose_device(requested: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA (this rank's GPU), then MPS, then CPU; else exactly what was asked."""
    if requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {requested!r} requested but CUDA is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device(f"cuda:{local_rank}")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def training_dtype(requested: str, device: torch.device) -> torch.dtype:
    """Training autocast dtype: bf16 on GPUs with it, fp16 (+ GradScaler) on other GPUs, fp32 on CPU."""
    if requested != "auto":
        dtype = getattr(torch, requested)
        if device.type == "cpu" and dtype == torch.float16:
            raise ValueError("dtype float16 needs a GPU; use float32 or bfloat16 on CPU")
        return dtype
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def inference_dtype(requested: str, device: torch.device) -> torch.dtype:
    """Inference autocast dtype: bf16 where the hardware runs it natively, else fp32 (never fp16)."""
    if requested != "auto":
        return getattr(torch, requested)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        native = (
            getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        )
        return torch.bfloat16 if native else torch.float32
    return torch.float32


def autocast(
    device: torch.device, dtype: torch.dtype | None = None
) -> contextlib.AbstractContextManager:
    """Mixed precision at ``dtype`` (float32: none); ``None``: bf16 on CUDA with bf16, else none."""
    if dtype is None:
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if cuda_bf16 else torch.float32
    if dtype == torch.float32 or device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def prepare_device(device: torch.device) -> None:
    """Select the GPU of this process and allow TF32 matmuls/convolutions on it."""
    if device.type == "cuda":
        if device.index is not None:
            torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def set_threads(threads: int | None, *, leave_one_above: int | None = None) -> int:
    """Set torch's intra-op threads; returns the count in effect.

    ``threads=None`` keeps OMP_NUM_THREADS when it is set, else uses every CPU this process may
    use; with ``leave_one_above=N`` one CPU is left free on machines with more than N CPUs.
    """
    if threads is None:
        if os.environ.get("OMP_NUM_THREADS"):
            return torch.get_num_threads()
        cpus = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
        threads = cpus - 1 if leave_one_above is not None and cpus > leave_one_above else cpus
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()
