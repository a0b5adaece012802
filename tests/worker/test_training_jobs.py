"""End to end: uvicorn API + real Celery worker processes + Redis, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import matplotlib.image as mpimg
import pytest

from tests.service.stack import (
    Stack,
    assert_best_checkpoint_is_the_minimum,
    assert_resumed_from_checkpoint,
    postgres_schema,
    redis_url,
    run_dir,
    service_env,
    tiny_spec,
    unique_queue,
    wait_for_iteration,
    wait_for_job,
)

pytestmark = pytest.mark.slow


def _stack(tmp: Path, database_url: str) -> Stack:
    env = service_env(tmp / "data", database_url, redis_url(), unique_queue())
    (tmp / "logs").mkdir()
    return Stack(env, tmp / "logs")


@pytest.fixture(scope="module")
def sqlite_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("sqlite-stack")
    stack = _stack(tmp, f"sqlite:///{tmp / 'jobs.db'}")
    try:
        stack.start_api()
        stack.start_worker()
        yield stack
    finally:
        stack.stop()
        print(stack.logs())


@pytest.fixture(scope="module")
def postgres_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("postgres-stack")
    with postgres_schema() as url:
        stack = _stack(tmp, url)
        try:
            stack.start_api()
            yield stack
        finally:
            stack.stop()
            print(stack.logs())


def steps(curve: dict) -> list[int]:
    return curve["steps"]


def assert_falling(values: list[float]) -> None:
    head, tail = values[:5], values[-5:]
    assert sum(tail) / len(tail) < sum(head) / len(head) - 1.0, values


def read_events(client: httpx.Client, job_id: str) -> list[tuple[str, dict]]:
    events = []
    with client.stream("GET", f"/jobs/{job_id}/events", timeout=300) as stream:
        for block in "".join(stream.iter_text()).split("\n\n"):
            if block.startswith("event: "):
                name, data = block.split("\n", 1)
                events.append(
                    (name.removeprefix("event: "), json.loads(data.removeprefix("data: ")))
                )
    return events


PROBED = ["mag_r", "g_r"]


def assert_probe_curves(curves: dict, steps_expected: list[int]) -> None:
    """The live probe's R^2 per label, at every evaluation, finite and at most 1."""
    assert set(curves["probe_r2"]) == set(PROBED)
    for curve in curves["probe_r2"].values():
        assert steps(curve) == steps_expected
        assert all(-1e6 < v <= 1.0 for v in curve["values"]), curve


def test_job_completes_with_a_falling_curve_then_resumes(sqlite_stack: Stack) -> None:
    client = sqlite_stack.client()
    # with a live probe (3-fold on the ~14 validation galaxies): its curves ride beside the losses
    spec = tiny_spec(
        max_iters=30,
        data={"source": "mock", "n_mock": 48, "val_fraction": 0.3},
        live_probe={"labels": PROBED, "n_galaxies": 16, "folds": 3},
    )
    job_id = client.post("/jobs", json=spec).json()["id"]
    events = read_events(client, job_id)  # streams live until the job finishes
    assert events[-1] == ("end", {"id": job_id, "phase": "completed"})
    # the worker imported the training code once, before its pool forked (worker/preload.py)
    assert "training code imported" in (sqlite_stack.log_dir / "worker-0.log").read_text()
    assert {"queued", "running"} & {data["phase"] for name, data in events if name == "progress"}
    streamed = sorted(
        {
            s
            for name, data in events
            if name == "progress"
            for s in data["curves"]["train_loss"]["steps"]
        }
    )
    assert streamed == list(range(1, 31))
    streamed_probe = sorted(
        {
            s
            for name, data in events
            if name == "progress"
            for s in data["curves"]["probe_r2"].get("g_r", {"steps": []})["steps"]
        }
    )
    assert streamed_probe == [0, 10, 20, 30]

    job = client.get(f"/jobs/{job_id}").json()
    assert job["phase"] == "completed" and job["device"] == "cpu" and job["attempts"] == 1
    assert job["codec"]["spec"] == "random:0" and job["n_params"] > 0
    assert job["progress"]["iteration"] == 30 and job["progress"]["fraction"] == 1.0
    assert steps(job["curves"]["train_loss"]) == list(range(1, 31))
    assert_falling(job["curves"]["train_loss"]["values"])
    assert steps(job["curves"]["val_loss"]) == [0, 10, 20, 30]  # 0: untrained baseline
    val = job["curves"]["val_loss"]["values"]
    assert val[-1] < val[0] and job["best_val_loss"] == min(val)
    assert_probe_curves(job["curves"], [0, 10, 20, 30])
    assert len(job["curves"]["lr"]["values"]) == 30
    names = {c["name"]: c for c in job["checkpoints"]}
    # checkpoint_interval 5 is forced by the worker; only the newest 3 periodic ones are kept
    assert set(names) == {"best", "last", "step_000020", "step_000025", "step_000030"}
    assert names["last"]["step"] == 30 and names["best"]["step"] == 30

    artifacts = client.get(f"/jobs/{job_id}/artifacts").json()["files"]
    assert not any(f["path"].startswith("checkpoints/step_000015/") for f in artifacts)
    images = [f for f in artifacts if f["kind"] == "val_image"]
    assert [f["path"] for f in images] == [f"val_images/step_{s:06d}.png" for s in (0, 10, 20, 30)]
    assert client.get(images[-1]["download_url"]).content[:4] == b"\x89PNG"
    archive = zipfile.ZipFile(io.BytesIO(client.get(names["best"]["download_url"]).content))
    assert {"best/model.safetensors", "best/config.json"} <= set(archive.namelist())
    png = client.get(f"/jobs/{job_id}/loss.png").content
    assert png[:4] == b"\x89PNG"
    assert mpimg.imread(io.BytesIO(png), format="png").shape[0] == 650  # losses + the probe panel

    assert client.post(f"/jobs/{job_id}/resume").status_code == 409  # nothing left to train
    resumed = client.post(f"/jobs/{job_id}/resume", json={"max_iters": 40})
    assert resumed.status_code == 202 and resumed.json()["phase"] == "queued"
    job = wait_for_job(client, job_id, {"completed"})
    assert job["attempts"] == 2 and job["progress"]["iteration"] == 40
    assert steps(job["curves"]["train_loss"]) == list(range(1, 41))
    assert steps(job["curves"]["val_loss"]) == [0, 10, 20, 30, 40]
    assert_probe_curves(job["curves"], [0, 10, 20, 30, 40])
    # resume-after-complete: attempt 2 trained exactly steps 31..40 from the step-30 checkpoint
    assert_resumed_from_checkpoint(run_dir(sqlite_stack, job_id), final_step=40)
    assert_best_checkpoint_is_the_minimum(job)


def test_cancel_mid_run_leaves_a_checkpoint_then_resume(sqlite_stack: Stack) -> None:
    client = sqlite_stack.client()
    job_id = client.post("/jobs", json=tiny_spec(max_iters=2000, eval_interval=500)).json()["id"]
    wait_for_iteration(client, job_id, 3)
    cancel = client.post(f"/jobs/{job_id}/cancel")
    assert cancel.status_code == 202 and cancel.json()["phase"] == "cancelling"
    job = wait_for_job(client, job_id, {"cancelled"}, timeout=60)
    stopped_at = job["progress"]["iteration"]
    assert 3 <= stopped_at < 2000
    last = {c["name"]: c for c in job["checkpoints"]}["last"]
    assert last["step"] == stopped_at
    assert steps(job["curves"]["train_loss"]) == list(range(1, stopped_at + 1))
    assert job["finished_at"] is not None and job["failure_reason"] is None

    client.post(f"/jobs/{job_id}/resume", json={"max_iters": stopped_at + 4})
    job = wait_for_job(client, job_id, {"completed"})
    assert steps(job["curves"]["train_loss"]) == list(range(1, stopped_at + 5))
    # cancel-then-resume: the cancelled attempt's last checkpoint is where attempt 2 began
    first, _ = assert_resumed_from_checkpoint(
        run_dir(sqlite_stack, job_id), final_step=stopped_at + 4
    )
    assert first["last_step"] == stopped_at
    assert client.delete(f"/jobs/{job_id}").status_code == 204


def test_failure_is_recorded_with_its_reason(sqlite_stack: Stack) -> None:
    client = sqlite_stack.client()
    # fails the same way on any machine, GPU or not: float16 is refused on the CPU device
    job_id = client.post("/jobs", json=tiny_spec(device="cpu", dtype="float16")).json()["id"]
    job = wait_for_job(client, job_id, {"failed"})
    assert "float16 needs a GPU" in job["failure_reason"]
    assert job["finished_at"] is not None


def test_postgres_job_survives_a_killed_worker(postgres_stack: Stack) -> None:
    client = postgres_stack.client()
    first = postgres_stack.start_worker()
    # with a live probe: its curves survive the kill and the resume like the losses do
    spec = tiny_spec(
        max_iters=40,
        data={"source": "mock", "n_mock": 48, "val_fraction": 0.3},
        live_probe={"labels": PROBED, "n_galaxies": 16, "folds": 3},
    )
    job_id = client.post("/jobs", json=spec).json()["id"]
    wait_for_iteration(client, job_id, 12)
    postgres_stack.kill_worker(first)
    # nothing but a live worker's recovery (once the dead one's lease ran out) may touch the job
    assert client.get(f"/jobs/{job_id}").json()["phase"] == "running"
    postgres_stack.start_worker()
    job = wait_for_job(client, job_id, {"completed"})
    assert job["attempts"] == 2
    train = steps(job["curves"]["train_loss"])
    assert train == list(range(1, 41))  # no gap, no duplicate
    assert_falling(job["curves"]["train_loss"]["values"])
    assert steps(job["curves"]["val_loss"]) == [0, 10, 20, 30, 40]
    assert_probe_curves(job["curves"], [0, 10, 20, 30, 40])
    assert_best_checkpoint_is_the_minimum(job)
    # kill -9: attempt 2 restored the dead attempt's checkpoint (not step 0)
    assert_resumed_from_checkpoint(run_dir(postgres_stack, job_id), final_step=40, killed=True)
