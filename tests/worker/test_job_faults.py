"""Faults through the real service: uvicorn API + Celery worker processes + Redis.

A job whose worker is killed (SIGKILL) says so and is failed after its last attempt; cancel
is seen within seconds during data preparation and inside a long gradient accumulation; a
run that diverges is failed with its step, keeps only finite checkpoints and curves, and is
never the default model for inference.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.service.stack import (
    Stack,
    postgres_schema,
    redis_url,
    run_dir,
    service_env,
    tiny_spec,
    unique_queue,
    wait_for_iteration,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.slow
CANCEL_LIMIT_S = 30.0  # generous: the poll interval is 0.2 s
LEASE_S = "10"
# Both at the service's allowed maximum: AdamW's decay factor 1 - lr * wd = -99 per step
# makes the weights overflow float32 within a few steps, on any machine.
DIVERGING = {"learning_rate": 10.0, "weight_decay": 10.0, "grad_clip": 0.0, "warmup_iters": 0}


def _stack(tmp: Path, database_url: str) -> Stack:
    env = service_env(
        tmp / "data",
        database_url,
        redis_url(),
        unique_queue(),
        ASTROPT_MAX_ATTEMPTS="2",
        ASTROPT_WORKER_LEASE_SECONDS=LEASE_S,
        ASTROPT_MAX_TOKENS_PER_STEP="20000000",
    )
    (tmp / "logs").mkdir()
    return Stack(env, tmp / "logs")


@pytest.fixture(scope="module")
def sqlite_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("faults-sqlite")
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
    tmp = tmp_path_factory.mktemp("faults-postgres")
    with postgres_schema() as url:
        stack = _stack(tmp, url)
        try:
            stack.start_api()
            yield stack
        finally:
            stack.stop()
            print(stack.logs())


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in {text[:300]}")

    return json.loads(text, parse_constant=refuse)


def job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    return strict_json(client.get(f"/jobs/{job_id}").text)


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def cancel_and_time(client: httpx.Client, job_id: str) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 202
    body = wait_for_job(client, job_id, {"cancelled"}, timeout=120)
    return body, time.monotonic() - started


def test_killed_workers_are_recorded_and_the_last_attempt_fails(postgres_stack: Stack) -> None:
    client = postgres_stack.client()
    first = postgres_stack.start_worker()
    job_id = client.post("/jobs", json=tiny_spec(max_iters=100_000, eval_interval=10_000)).json()[
        "id"
    ]
    wait_for_iteration(client, job_id, 3)
    postgres_stack.kill_worker(first)
    second = postgres_stack.start_worker()  # it settles the dead attempt and runs attempt 2

    def second_attempt_running() -> dict[str, Any] | None:
        body = job(client, job_id)
        return body if body["attempts"] == 2 and body["phase"] == "running" else None

    body = wait_until(second_attempt_running, 180, "attempt 2 to run")
    assert [(i["attempt"], i["reason"]) for i in body["interruptions"]] == [(1, "lost heartbeat")]
    dead_owner = body["interruptions"][0]["worker"]
    assert dead_owner and body["max_attempts"] == 2
    wait_until(lambda: job(client, job_id)["progress"]["iteration"] >= 1, 180, "attempt 2 to train")
    # Like the kernel's OOM killer: only the training (pool) process dies, the worker lives on
    # and its own recovery settles the job.
    (pool,) = children(second.pid)
    os.kill(pool, signal.SIGKILL)
    body = wait_for_job(client, job_id, {"failed"}, timeout=180)
    assert second.poll() is None  # the worker itself survived
    assert body["attempts"] == 2
    assert re.fullmatch(
        r"worker \S+ died \(lost heartbeat\) during attempt 2 of 2; "
        r"no attempts left \(setting ASTROPT_MAX_ATTEMPTS\)",
        body["failure_reason"],
    ), body
    assert [i["attempt"] for i in body["interruptions"]] == [1, 2]
    assert body["interruptions"][1]["worker"] != dead_owner
    assert body["interruptions"][1]["worker"] in body["failure_reason"]
    time.sleep(float(LEASE_S) * 1.5)  # a live worker's recovery passes: failed stays failed
    assert job(client, job_id)["phase"] == "failed"


def test_cancel_inside_a_long_gradient_accumulation(sqlite_stack: Stack) -> None:
    client = sqlite_stack.client()
    # one optimiser step is 1024 micro-batches: minutes on a CPU
    spec = tiny_spec(max_iters=5, batch_size=8, grad_accum=1024, eval_iters=1)
    job_id = client.post("/jobs", json=spec).json()["id"]
    # the baseline evaluation (step 0) is done: the worker is inside step 1's micro-batches
    wait_until(
        lambda: job(client, job_id)["curves"]["val_loss"]["steps"] == [0],
        180,
        "baseline evaluation",
    )
    time.sleep(1.0)
    body, took = cancel_and_time(client, job_id)
    assert took < CANCEL_LIMIT_S, took
    assert body["progress"]["iteration"] == 0 and body["curves"]["train_loss"]["steps"] == []
    assert {c["name"]: c["step"] for c in body["checkpoints"]}["last"] == 0


def test_cancel_during_data_preparation(sqlite_stack: Stack) -> None:
    client = sqlite_stack.client()
    # 20,000 mock galaxies take minutes to simulate on a CPU
    spec = tiny_spec(data={"source": "mock", "n_mock": 20_000, "val_fraction": 0.125})
    job_id = client.post("/jobs", json=spec).json()["id"]
    mock_root = Path(sqlite_stack.env["ASTROPT_DATA_DIR"]) / "mock"
    wait_until(
        lambda: any(mock_root.glob(".n20000_seed0.partial-*")), 180, "mock generation to start"
    )
    body, took = cancel_and_time(client, job_id)
    assert took < CANCEL_LIMIT_S, took
    assert body["progress"]["iteration"] == 0 and body["curves"]["val_loss"]["steps"] == []
    assert not (mock_root / "n20000_seed0" / "manifest.json").exists()
    wait_until(
        lambda: not any(mock_root.glob(".n20000_seed0.partial-*")), 30, "the partial data set to go"
    )


def _events(client: httpx.Client, job_id: str) -> list[tuple[str, Any]]:
    with client.stream("GET", f"/jobs/{job_id}/events", timeout=300) as stream:
        text = "".join(stream.iter_text())
    blocks = [b for b in text.split("\n\n") if b.startswith("event: ")]
    return [
        (
            b.split("\n", 1)[0].removeprefix("event: "),
            strict_json(b.split("\n", 1)[1].removeprefix("data: ")),
        )
        for b in blocks
    ]


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def test_a_diverging_run_fails_with_finite_curves_and_is_never_served(sqlite_stack: Stack) -> None:
    client = sqlite_stack.client()
    healthy = client.post("/jobs", json=tiny_spec(max_iters=4, eval_interval=2)).json()["id"]
    wait_for_job(client, healthy, {"completed"})
    spec = tiny_spec(
        max_iters=60,
        eval_interval=3,
        checkpoint_interval=2,
        optim=DIVERGING,
        model={"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 576, "dropout": 0.0},
    )
    job_id = client.post("/jobs", json=spec).json()["id"]
    events = _events(client, job_id)  # every event parsed as strict JSON: no bare NaN
    assert events[-1] == ("end", {"id": job_id, "phase": "failed"})
    body = job(client, job_id)
    match = re.fullmatch(
        r"training diverged at step (\d+): (loss (nan|inf|-inf)|non-finite weights)",
        body["failure_reason"] or "",
    )
    assert body["phase"] == "failed" and match, body["failure_reason"]
    step = int(match.group(1))
    for name, curve in body["curves"].items():
        if isinstance(curve, dict) and name != "probe_r2":  # probe_r2: label -> curve (none here)
            assert None not in curve["values"] and all(s < step for s in curve["steps"]), name
    assert body["curves"]["train_loss"]["steps"] == list(range(1, step))
    saved = {c["name"]: c["step"] for c in body["checkpoints"]}
    assert "last" in saved and max(saved.values()) < step
    assert saved["last"] == max(s for s in range(0, step, 2))
    from astropt.checkpoints import load_checkpoint

    model, _ = load_checkpoint(run_dir(sqlite_stack, job_id) / "checkpoints" / "last", device="cpu")
    assert all(bool(np.isfinite(p.detach().numpy()).all()) for p in model.parameters())
    # Inference by default uses the latest *completed* job, not the newer failed one.
    cube = np.random.default_rng(0).gamma(1.0, 0.3, (4, 96, 96)).astype(np.float32)
    answer = client.post(
        "/reconstruct", files={"file": ("g.npy", _npy(cube))}, data={"panel": "single"}
    )
    assert answer.status_code == 200 and answer.headers["X-Job-Id"] == healthy, answer.text[:300]
