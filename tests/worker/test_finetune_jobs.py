"""Fine-tune jobs end to end: uvicorn API + a real Celery worker + Redis + SQLite.

A tiny training job trains; a ``kind: finetune`` job (LoRA) starts from its best checkpoint,
runs through the worker's claim/heartbeat/callback machinery and completes with curves, a
checkpoint and its metrics; ``POST /predict`` answers with finite label predictions."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from astropt.data import simulate_galaxy
from tests.service.stack import API_KEY, run_dir, tiny_spec, wait_for_iteration, wait_for_job
from tests.worker.test_training_jobs import sqlite_stack  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


def finetune_spec(init: dict | str, **section) -> dict:
    body = {
        "init": init,
        "labels": ["mag_r", "g_r"],
        "mode": "lora",
        "steps": 20,
        "eval_interval": 5,
        "batch_size": 8,
        "lr": 0.003,
        "lora": {"r": 4, "alpha": 8},
    }
    body.update(section)
    return {
        "kind": "finetune",
        "device": "cpu",
        "data": {"source": "mock", "n_mock": 64},
        "finetune": body,
    }


def galaxy_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, simulate_galaxy(seed=99, index=3)["flux"])
    return buffer.getvalue()


def test_finetune_job_from_a_trained_job_serves_predictions(sqlite_stack) -> None:  # noqa: F811
    client = sqlite_stack.client()
    trained = client.post("/jobs", json=tiny_spec(max_iters=10, codec="shipped"))
    assert trained.status_code == 201, trained.text
    train_id = trained.json()["id"]
    wait_for_job(client, train_id, {"completed"}, timeout=240)

    # Refusals before anything runs: the key, and unknown labels named against the valid ones.
    spec = finetune_spec({"job": train_id, "checkpoint": "best"})
    assert sqlite_stack.client(with_key=False).post("/jobs", json=spec).status_code == 401
    bad = client.post(
        "/jobs", json=finetune_spec({"job": train_id}, labels=["mag_r", "r_magnitude"])
    )
    assert bad.status_code == 422, bad.text
    issue = bad.json()["detail"][0]
    assert issue["field"] == "finetune.labels" and "r_magnitude" in issue["msg"]
    assert (
        "valid labels" in issue["msg"]
        and "g_r" in issue["msg"]
        and "bulge_fraction" in issue["msg"]
    )
    missing = client.post("/jobs", json=finetune_spec({"job": "0123abcd"}))
    assert missing.status_code == 422 and "not found" in missing.text

    submitted = client.post("/jobs", json=spec)
    assert submitted.status_code == 201, submitted.text
    assert (
        submitted.json()["kind"] == "finetune" and submitted.json()["progress"]["max_iters"] == 20
    )
    job_id = submitted.json()["id"]
    job = wait_for_job(client, job_id, {"completed"}, timeout=300)
    assert job["progress"]["iteration"] == 20 and job["attempts"] == 1
    assert job["curves"]["train_loss"]["values"] and len(job["curves"]["val_loss"]["steps"]) == 4
    assert {c["name"] for c in job["checkpoints"]} == {"best", "last"}
    assert job["best_val_loss"] == pytest.approx(min(job["curves"]["val_loss"]["values"]), rel=1e-5)
    out = run_dir(sqlite_stack, job_id)
    assert (out / "finetune_metrics.json").is_file() and (
        out / "checkpoints/best/head.safetensors"
    ).is_file()
    files = {f["path"] for f in client.get(f"/jobs/{job_id}/artifacts").json()["files"]}
    assert {"finetune_metrics.json", "finetune_test.png"} <= files
    assert client.post(f"/jobs/{job_id}/resume").status_code == 409  # its 20 steps are done

    upload = {"file": ("galaxy.npy", galaxy_npy())}
    for form in ({"job_id": job_id}, {}):  # default: the latest completed fine-tune job
        answer = client.post("/predict", files=upload, data=form)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["job_id"] == job_id and body["task"] == "regression"
        assert set(body["predictions"]) == {"mag_r", "g_r"}
        assert all(math.isfinite(v) for v in body["predictions"].values())
        assert 10 < body["predictions"]["mag_r"] < 30  # de-standardised: magnitudes, not z-scores
    one = client.post("/predict", files=upload, data={"labels": "g_r"}).json()
    assert list(one["predictions"]) == ["g_r"]
    from astropt.client import Client

    with Client(sqlite_stack.base_url, api_key=API_KEY) as api:  # the Python client says the same
        assert (
            api.predict(simulate_galaxy(seed=99, index=3)["flux"], job_id)["predictions"]
            == body["predictions"]
        )
    unknown = client.post("/predict", files=upload, data={"labels": "mag_r,size"})
    assert (
        unknown.status_code == 422
        and "size" in unknown.text
        and "valid labels: mag_r, g_r" in unknown.text
    )
    wrong_kind = client.post("/predict", files=upload, data={"job_id": train_id})
    assert wrong_kind.status_code == 422 and "fine-tune job" in wrong_kind.text
    assert sqlite_stack.client(with_key=False).post("/predict", files=upload).status_code == 401
    # The fine-tuned backbone is a plain AstroPT checkpoint: /embed serves it.
    embed = client.post("/embed", files=upload, data={"job_id": job_id})
    assert embed.status_code == 200 and embed.json()["dim"] == 32


def test_a_cancelled_fine_tune_resumes_from_its_last_checkpoint(sqlite_stack) -> None:  # noqa: F811
    client = sqlite_stack.client()
    job_id = client.post(
        "/jobs", json=finetune_spec("shipped", steps=5000, eval_interval=5)
    ).json()["id"]
    wait_for_iteration(client, job_id, 5, timeout=240)
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 202
    job = wait_for_job(client, job_id, {"cancelled"}, timeout=120)
    stopped = job["progress"]["iteration"]
    assert 5 <= stopped < 5000
    assert {c["name"]: c["step"] for c in job["checkpoints"]}["last"] == stopped
    before = dict(
        zip(job["curves"]["val_loss"]["steps"], job["curves"]["val_loss"]["values"], strict=True)
    )

    resumed = client.post(f"/jobs/{job_id}/resume", json={"max_iters": stopped + 7})
    assert resumed.status_code == 202, resumed.text
    assert resumed.json()["spec"]["finetune"]["steps"] == stopped + 7
    job = wait_for_job(client, job_id, {"completed"}, timeout=240)
    assert job["attempts"] == 2 and job["progress"]["iteration"] == stopped + 7
    val = dict(
        zip(job["curves"]["val_loss"]["steps"], job["curves"]["val_loss"]["values"], strict=True)
    )
    # Attempt 2 continued from step `stopped`: the points before it are attempt 1's, untouched (a
    # restart from step 0 would have re-run them on the new, shorter schedule, to other values).
    assert {s: v for s, v in val.items() if s <= stopped} == before
    assert max(val) == stopped + 7 and sorted(val) == sorted(set(val))
    out = run_dir(sqlite_stack, job_id)
    assert (out / "finetune_metrics.json").is_file()
    names = {c["name"]: c["step"] for c in job["checkpoints"]}
    assert names["last"] == stopped + 7 and names["best"] in val
