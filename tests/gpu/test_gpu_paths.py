"""The GPU paths, run by `scripts/gpu-check` on a machine with CUDA (skipped elsewhere):
bf16 autocast, torch.compile, an NCCL process group, the codec on the device, /reconstruct on
the device, and a 2-GPU job where there are two."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here"),
]
REPO = Path(__file__).resolve().parents[2]


def _tiny_config(tmp_path: Path, **overrides: object):
    from astropt.config import TrainConfig

    body = {
        "out_dir": str(tmp_path / "run"),
        "codec": "shipped",
        "model": {"n_layer": 2, "n_head": 4, "n_embd": 128, "block_size": 576},
        "data": {
            "source": "mock",
            "n_mock": 64,
            "val_fraction": 0.125,
            "path": str(tmp_path / "mock"),
        },
        "batch_size": 8,
        "max_iters": 12,
        "eval_interval": 6,
        "eval_iters": 1,
        "log_interval": 1,
        "n_val_images": 2,
        "device": "auto",
        "dtype": "auto",
        "compile": "auto",
        "optim": {"learning_rate": 3e-3, "warmup_iters": 2},
    }
    body.update(overrides)
    return TrainConfig.model_validate(body)


def test_auto_picks_cuda_bf16_and_compile(tmp_path: Path) -> None:
    from astropt.training.runtime import setup_runtime, teardown_runtime

    runtime = setup_runtime(_tiny_config(tmp_path))
    try:
        assert runtime.device.type == "cuda"
        assert runtime.dtype == (
            torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        )
        assert runtime.compile is True
        assert torch.backends.cuda.matmul.allow_tf32
    finally:
        teardown_runtime(runtime)


def test_bf16_forward_matches_float32_and_compile_matches_eager() -> None:
    from astropt.model import GPT
    from astropt.tokenise import shift_for_training
    from astropt.training.loop import gpt_config

    torch.manual_seed(0)
    model = GPT(gpt_config(_tiny_config(Path("/tmp")))).cuda().eval()
    tokens = torch.randint(0, 10_000, (4, 576), device="cuda")
    inputs, targets = shift_for_training(tokens)
    with torch.no_grad():
        _, loss32 = model(inputs, targets)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss16 = model(inputs, targets)
        compiled = torch.compile(model)
        _, loss_compiled = compiled(inputs, targets)
    assert torch.isfinite(loss16) and abs(loss16.item() - loss32.item()) < 0.05 * loss32.item()
    assert abs(loss_compiled.item() - loss32.item()) < 1e-3 * loss32.item()


def test_a_training_run_on_the_gpu_learns(tmp_path: Path) -> None:
    from astropt.training import train

    result = train(_tiny_config(tmp_path, max_iters=30, eval_interval=15), [], resume=False)
    assert result.status == "completed" and result.best_val_loss is not None
    assert result.best_val_loss < np.log(10_000) - 0.5  # well below the uniform 9.21 nats


def test_the_codec_on_the_gpu_gives_the_cpu_tokens() -> None:
    from astropt.codec import load_codec

    flux = np.random.default_rng(0).gamma(1.0, 0.3, (8, 4, 152, 152)).astype(np.float32)
    cpu = load_codec("shipped", device="cpu").encode(
        flux.copy(), ("DES-G", "DES-R", "DES-I", "DES-Z")
    )
    gpu = load_codec("shipped", device="cuda").encode(
        flux.copy(), ("DES-G", "DES-R", "DES-I", "DES-Z")
    )
    assert (
        cpu.cpu() == gpu.cpu()
    ).float().mean() > 0.99  # TF32/kernel rounding may flip a rare code


def test_nccl_process_group_all_reduces(tmp_path: Path) -> None:
    n = min(2, torch.cuda.device_count())
    script = tmp_path / "allreduce.py"
    script.write_text(
        "import os, torch, torch.distributed as dist\n"
        "dist.init_process_group('nccl')\n"
        "rank = dist.get_rank(); torch.cuda.set_device(int(os.environ['LOCAL_RANK']))\n"
        "x = torch.full((4,), float(rank + 1), device='cuda'); dist.all_reduce(x)\n"
        "assert x[0].item() == sum(range(1, dist.get_world_size() + 1)), x\n"
        "dist.destroy_process_group(); print('ok', rank)\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={n}",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.count("ok") == n, proc.stdout + proc.stderr


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="one GPU: the 2-GPU job needs two")
def test_a_two_gpu_job_trains_one_model(tmp_path: Path) -> None:
    config = _tiny_config(tmp_path, max_iters=10)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(config.to_yaml())
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            "-m",
            "astropt.cli",
            "train",
            "--config",
            str(config_file),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last").is_dir()


def test_reconstruct_runs_on_the_device(tmp_path: Path) -> None:
    import httpx

    from service.app import create_app
    from service.inference.engine import InferenceEngine
    from state.settings import InferenceSettings, Settings
    from tests.service.stack import ThreadedServer

    app = create_app(
        Settings(data_dir=tmp_path), publish=lambda job_id: None, check_broker=lambda: None
    )
    app.state.inference_engine = InferenceEngine(
        InferenceSettings(device="cuda"), app.state.metrics.registry
    )
    cube = np.random.default_rng(1).gamma(1.0, 0.3, (4, 160, 160)).astype(np.float32)
    body = io.BytesIO()
    np.save(body, cube)
    try:
        with ThreadedServer(app) as server:
            response = httpx.post(
                f"{server.base_url}/reconstruct",
                files={"file": ("g.npy", body.getvalue())},
                timeout=120,
            )
        assert response.status_code == 200, response.text
        assert (
            response.headers["content-type"] == "image/png"
            and response.headers["X-Job-Id"] == "shipped"
        )
        assert app.state.inference_engine.runtime.device.type == "cuda"
    finally:
        app.state.inference_engine.close()
