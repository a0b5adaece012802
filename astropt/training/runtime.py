"""Device, precision and distributed setup, chosen automatically.

CPU: float32, no compile. CUDA: bf16 autocast when supported (else fp16 with a
GradScaler), TF32 matmuls, ``torch.compile``. Under ``torchrun`` (``RANK`` set) a
process group is started: NCCL on GPUs, gloo on CPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from astropt.config import TrainConfig
from astropt.torch_policy import (
    autocast,
    choose_device,
    prepare_device,
    set_threads,
    training_dtype,
)


@dataclass
class Runtime:
    device: torch.device
    dtype: torch.dtype
    compile: bool
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    ddp: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device_type(self) -> str:
        return self.device.type

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.dtype)

    @property
    def needs_scaler(self) -> bool:
        return self.device_type == "cuda" and self.dtype == torch.float16

    def describe(self) -> dict[str, Any]:
        return {
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "compile": self.compile,
            "world_size": self.world_size,
        }


def setup_runtime(config: TrainConfig) -> Runtime:
    """Pick device/dtype/compile; join the process group when launched by torchrun."""
    ddp = int(os.environ.get("RANK", -1)) != -1 and int(os.environ.get("WORLD_SIZE", 1)) > 1
    rank = int(os.environ.get("RANK", 0)) if ddp else 0
    local_rank = int(os.environ.get("LOCAL_RANK", 0)) if ddp else 0
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if ddp else 1
    device = choose_device(config.device, local_rank)
    if ddp and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    prepare_device(device)
    if config.num_threads:
        set_threads(config.num_threads)
    dtype = training_dtype(config.dtype, device)
    compile_ = config.compile == "on" or (config.compile == "auto" and device.type == "cuda")
    return Runtime(device, dtype, compile_, rank, local_rank, world_size, ddp)


@contextlib.contextmanager
def main_rank_first(runtime: Runtime) -> Iterator[None]:
    """Run the body on rank 0 first (e.g. to fill a shared cache), then on the other ranks."""
    if runtime.ddp and not runtime.is_main:
        dist.barrier()
    yield
    if runtime.ddp and runtime.is_main:
        dist.barrier()


def teardown_runtime(runtime: Runtime) -> None:
    if runtime.ddp and dist.is_initialized():
        dist.destroy_process_group()


def rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
