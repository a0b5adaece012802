"""A patch-token MAE job through POST /jobs (uvicorn + Celery worker + Redis), then served."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.service.stack import wait_for_job
from tests.worker.test_training_jobs import sqlite_stack  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


def test_patch_mae_job_trains_and_serves(sqlite_stack) -> None:  # noqa: F811
    client = sqlite_stack.client()
    spec = {"codec": "random:0", "device": "cpu", "batch_size": 4, "max_iters": 30, "eval_interval": 10,
            "eval_iters": 1, "log_interval": 1, "n_val_images": 1, "seed": 3,
            "optim": {"learning_rate": 0.01, "warmup_iters": 2},
            "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 36, "tokeniser": "patch",
                      "patch_encoder": "affine", "objective": "mae", "attn_type": "full", "mae_mask_ratio": 0.5},
            "data": {"source": "mock", "n_mock": 32, "val_fraction": 0.125}}
    response = client.post("/jobs", json=spec)
    assert response.status_code in (201, 202), response.text
    job_id = response.json()["id"]
    job = wait_for_job(client, job_id, {"completed"}, timeout=240)
    values = job["curves"]["train_loss"]["values"]
    assert sum(values[-5:]) / 5 < sum(values[:5]) / 5, values
    buffer = io.BytesIO()
    flux = np.random.default_rng(0).normal(0, 0.01, (4, 120, 120)).astype(np.float32)
    np.save(buffer, flux)
    files = {"file": ("g.npy", buffer.getvalue())}
    recon = client.post("/reconstruct", files=files, data={"job_id": job_id, "mode": "masked", "format": "json"})
    assert recon.status_code == 200, recon.text
    body = recon.json()
    assert body["mode"] == "masked" and body["shape"] == [4, 96, 96] and body["codec_mse"] is None
    png = client.post("/reconstruct", files=files, data={"job_id": job_id})
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    embed = client.post("/embed", files=files, data={"job_id": job_id})
    assert embed.status_code == 200 and embed.json()["dim"] == 32
