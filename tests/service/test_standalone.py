"""``astropt serve``: API + worker + filesystem broker + SQLite in one command, no services."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.jobs.schemas import DEMO_JOB
from tests.service.stack import (
    Stack,
    assert_resumed_from_checkpoint,
    service_env,
    tiny_spec,
    unique_queue,
    wait_for_iteration,
    wait_for_job,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[Stack]:
    (tmp_path / "logs").mkdir()
    stack = Stack(service_env(tmp_path / "data", None, None, unique_queue()), tmp_path / "logs")
    try:
        yield stack
    finally:
        stack.stop()
        print(stack.logs())


def test_serve_demo_runs_jobs_and_recovers_after_a_crash(standalone: Stack, tmp_path: Path) -> None:
    standalone.start_api("--demo", command="serve")
    client = standalone.client()
    assert client.get("/health").json()["broker"] == "ok"
    demo = client.get("/jobs").json()["items"]
    assert len(demo) == 1
    demo_job = client.get(f"/jobs/{demo[0]['id']}").json()
    assert demo_job["spec"]["init_from"] is None and demo_job["spec"]["codec"] == "shipped"
    assert demo_job["spec"]["model"]["n_embd"] == DEMO_JOB["model"]["n_embd"]
    assert demo_job["spec"]["data"]["n_mock"] == DEMO_JOB["data"]["n_mock"]
    wait_for_iteration(client, demo_job["id"], 2)
    # it starts from random weights, at ln(10000) = 9.21 nats (tests/service/test_demo.py sees it fall)
    val = client.get(f"/jobs/{demo_job['id']}").json()["curves"]["val_loss"]
    assert val["steps"][0] == 0 and abs(val["values"][0] - 9.21) < 0.5, val
    assert client.post(f"/jobs/{demo_job['id']}/cancel").status_code == 202
    wait_for_job(client, demo_job["id"], {"cancelled"})

    data = tmp_path / "data"
    assert (data / "astropt.db").is_file() and (data / "broker" / "queue").is_dir()
    job_id = client.post("/jobs", json=tiny_spec(max_iters=30)).json()["id"]
    wait_for_iteration(client, job_id, 8)
    assert standalone.api is not None
    os.killpg(standalone.api.pid, signal.SIGKILL)  # the whole standalone service dies mid-job
    standalone.api.wait()

    standalone.start_api(command="serve")  # the restart finds the interrupted job and resumes it
    job = wait_for_job(client, job_id, {"completed"})
    assert job["attempts"] == 2
    assert job["curves"]["train_loss"]["steps"] == list(range(1, 31))
    # the crash cost at most the steps after the last checkpoint; attempt 2 started from it
    assert_resumed_from_checkpoint(data / "runs" / job_id, final_step=30, killed=True)
    assert (data / "runs" / job_id / "checkpoints" / "last" / "model.safetensors").is_file()
