"""Model FLOPs utilisation (MFU): the share of the accelerators' peak that the model's maths uses.

FLOPs per token follow the usual dense-transformer estimate (Kaplan et al. 2020; PaLM, app. B):
``6 N`` for the forward and backward matrix multiplies over ``N`` parameters, plus
``12 L T d`` for the attention scores and their weighted sums over a context of ``T`` tokens.
The peak is the vendor's dense (no sparsity) figure for the compute precision in use; fp32 on
CUDA counts as TF32, which the trainer enables. Devices not in the table report "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Dense tensor-core peak per device, in TFLOP/s: (bf16/fp16, fp32-as-TF32). Matched in order
# against the CUDA device name, so the PCIe variants come before the bare model names.
PEAK_TFLOPS: tuple[tuple[str, float, float], ...] = (
    ("H100 PCIe", 756.0, 378.0),
    ("H100", 989.4, 494.7),  # SXM (and NVL per GPU rounds to the same order)
    ("H200", 989.4, 494.7),
    ("A100", 312.0, 156.0),
    ("L40S", 362.1, 183.0),
    ("L4", 121.0, 60.0),
)


@dataclass(frozen=True)
class Peak:
    device_name: str
    precision: str  # "bfloat16" | "float16" | "float32"
    flops: float | None  # per device; None = unknown

    @property
    def known(self) -> bool:
        return self.flops is not None

    def describe(self) -> str:
        if self.flops is None:
            return f"unknown ({self.device_name}, {self.precision})"
        return f"{self.flops / 1e12:.1f} TFLOP/s ({self.device_name}, {self.precision})"


def flops_per_token(n_params: int, n_layer: int, n_embd: int, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward) of a dense decoder."""
    return 6.0 * n_params + 12.0 * n_layer * seq_len * n_embd


def peak_for(device_name: str, precision: str) -> Peak:
    """Look ``device_name`` (e.g. 'NVIDIA H100 80GB HBM3') up in :data:`PEAK_TFLOPS`."""
    for key, half, tf32 in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            tflops = tf32 if precision == "float32" else half
            return Peak(device_name, precision, tflops * 1e12)
    return Peak(device_name, precision, None)


def device_peak(device: torch.device, dtype: torch.dtype) -> Peak:
    precision = str(dtype).removeprefix("torch.")
    if device.type != "cuda":
        return Peak(device.type, precision, None)  # CPUs vary too much for a table
    return peak_for(torch.cuda.get_device_name(device), precision)


def mfu(tokens_per_s: float, per_token: float, peak: Peak, world_size: int = 1) -> float | None:
    """Achieved model FLOP/s over the peak of all ``world_size`` devices; None when unknown."""
    if peak.flops is None or tokens_per_s <= 0:
        return None
    return tokens_per_s * per_token / (peak.flops * world_size)


def gpu_memory_peak(device: torch.device) -> int | None:
    """Bytes of the largest allocation high-water mark on this device so far (None off CUDA)."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device))
