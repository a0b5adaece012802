"""MFU arithmetic: FLOPs per token from the model's shape, peaks from the table."""

from __future__ import annotations

import pytest
import torch

from astropt.training.efficiency import device_peak, flops_per_token, mfu, peak_for


def test_flops_per_token_is_6n_plus_attention() -> None:
    # 12 layers x 768 wide, 85 M parameters, 575 tokens of context
    assert flops_per_token(85_000_000, 12, 768, 575) == 6 * 85_000_000 + 12 * 12 * 575 * 768


@pytest.mark.parametrize(
    ("name", "precision", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", "bfloat16", 989.4),
        ("NVIDIA H100 PCIe", "bfloat16", 756.0),
        ("NVIDIA H200", "float32", 494.7),
        ("NVIDIA A100-SXM4-80GB", "bfloat16", 312.0),
        ("NVIDIA L40S", "bfloat16", 362.1),
    ],
)
def test_peak_table(name: str, precision: str, tflops: float) -> None:
    assert peak_for(name, precision).flops == pytest.approx(tflops * 1e12)


def test_unknown_devices_have_no_mfu() -> None:
    assert not peak_for("NVIDIA GeForce GTX 1080", "float32").known
    cpu = device_peak(torch.device("cpu"), torch.float32)
    assert cpu.describe().startswith("unknown") and mfu(1e6, 1e9, cpu) is None


def test_mfu_divides_by_every_device() -> None:
    peak = peak_for("NVIDIA H100 80GB HBM3", "bfloat16")
    # 1e5 tokens/s x 1e9 FLOPs/token = 1e14 FLOP/s over 2 x 989.4e12
    assert mfu(1e5, 1e9, peak, world_size=2) == pytest.approx(1e14 / (2 * 989.4e12))
