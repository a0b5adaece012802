"""A patch-token MAE job through POST /jobs (uvicorn + Celery worker + Redis), with its live
probe, then served: /reconstruct, /embed, and an embedding-catalogue job of the model whose rows
are /embed's for the same galaxies, searched by an object's own image."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest

from astropt.data import simulate_galaxy
from tests.service.stack import wait_for_job
from tests.worker.test_training_jobs import sqlite_stack  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


def test_patch_mae_job_trains_and_serves(sqlite_stack) -> None:  # noqa: F811
    client = sqlite_stack.client()
    spec = {
        "codec": "random:0",
        "device": "cpu",
        "batch_size": 4,
        "max_iters": 30,
        "eval_interval": 10,
        "eval_iters": 1,
        "log_interval": 1,
        "n_val_images": 1,
        "seed": 3,
        "optim": {"learning_rate": 0.01, "warmup_iters": 2},
        "model": {
            "n_layer": 1,
            "n_head": 2,
            "n_embd": 32,
            "block_size": 36,
            "tokeniser": "patch",
            "patch_encoder": "affine",
            "objective": "mae",
            "attn_type": "full",
            "mae_mask_ratio": 0.5,
        },
        "data": {"source": "mock", "n_mock": 48, "val_fraction": 0.25},
        "live_probe": {"labels": ["mag_r", "g_r"], "n_galaxies": 12, "folds": 3},
    }
    response = client.post("/jobs", json=spec)
    assert response.status_code in (201, 202), response.text
    job_id = response.json()["id"]
    job = wait_for_job(client, job_id, {"completed"}, timeout=240)
    values = job["curves"]["train_loss"]["values"]
    assert sum(values[-5:]) / 5 < sum(values[:5]) / 5, values
    probe = job["curves"]["probe_r2"]["mag_r"]
    assert probe["steps"] == [0, 10, 20, 30] and all(np.isfinite(probe["values"])), probe
    buffer = io.BytesIO()
    flux = np.random.default_rng(0).normal(0, 0.01, (4, 120, 120)).astype(np.float32)
    np.save(buffer, flux)
    files = {"file": ("g.npy", buffer.getvalue())}
    recon = client.post(
        "/reconstruct", files=files, data={"job_id": job_id, "mode": "masked", "format": "json"}
    )
    assert recon.status_code == 200, recon.text
    body = recon.json()
    assert body["mode"] == "masked" and body["shape"] == [4, 96, 96] and body["codec_mse"] is None
    png = client.post("/reconstruct", files=files, data={"job_id": job_id})
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    embed = client.post("/embed", files=files, data={"job_id": job_id})
    assert embed.status_code == 200 and embed.json()["dim"] == 32

    # An embedding catalogue of the patch model, over galaxies it never saw.
    n, seed = 10, 5
    made = client.post(
        "/jobs",
        json={
            "kind": "embed",
            "device": "cpu",
            "data": {"source": "mock", "n_mock": n, "mock_seed": seed},
            "embed": {"model": {"job": job_id}, "batch_size": 4},
        },
    )  # centre 4
    assert made.status_code == 201, made.text
    embed_id = made.json()["id"]
    done = wait_for_job(client, embed_id, {"completed"}, timeout=240)
    assert done["progress"]["iteration"] == n and done["codec"] is None
    manifest = client.get(f"/catalogues/{embed_id}").json()["manifest"]
    assert manifest["inputs"]["tokeniser"] == "patch" and manifest["count"] == n
    table = pq.read_table(
        io.BytesIO(client.get(f"/catalogues/{embed_id}/catalogue.parquet").content)
    )
    vectors = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    for row in (0, n - 1):
        upload = io.BytesIO()
        np.save(upload, simulate_galaxy(seed=seed, index=row)["flux"])
        answer = client.post(
            "/embed", files={"file": ("g.npy", upload.getvalue())}, data={"job_id": job_id}
        )
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(
            vectors[row], answer.json()["embedding"]["centre"], rtol=1e-4, atol=1e-5
        )
        hits = client.post(
            "/search",
            files={"file": ("g.npy", upload.getvalue())},
            data={"job_id": embed_id, "k": "3"},
        )
        assert hits.status_code == 200, hits.text
        assert hits.json()["neighbours"][0]["object_id"] == table.column("object_id")[row].as_py()
