"""Placement refusals over a real API + Celery worker + SQLite + Redis: a job that no worker could
ever run is refused at submission when workers are online, and failed with the reason by the
first worker that sees it when none was; a job cancelled while it waits stops being retried;
of concurrent resumes exactly one queues the job."""

from __future__ import annotations

import concurrent.futures
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from state.store import session_scope, workers
from tests.service.stack import (
    Stack,
    redis_url,
    service_env,
    tiny_spec,
    unique_queue,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("placement-stack")
    env = service_env(
        tmp / "data",
        f"sqlite:///{tmp / 'jobs.db'}",
        redis_url(),
        unique_queue(),
        ASTROPT_WORKER_DEVICES="2",
        ASTROPT_WORKER_LEASE_SECONDS="3",
    )
    (tmp / "logs").mkdir()
    stack = Stack(env, tmp / "logs")
    try:
        stack.start_api()  # no worker yet: jobs are accepted and wait
        yield stack
    finally:
        stack.stop()
        print(stack.logs())


def _online(stack: Stack) -> bool:
    with session_scope(stack.env["ASTROPT_DATABASE_URL"]) as session:
        return bool(workers.live(session, 30))


def test_jobs_no_worker_can_run_fail_with_the_reason_once_a_worker_is_online(stack: Stack) -> None:
    client = stack.client()
    three = client.post("/jobs", json=tiny_spec(resources={"procs_per_node": 3}))
    gpu = client.post("/jobs", json=tiny_spec(device="cuda"))
    waiting = client.post("/jobs", json=tiny_spec(max_iters=400, resources={"procs_per_node": 2}))
    for response in (three, gpu, waiting):
        assert response.status_code == 201, response.text
        assert "no worker is online" in response.json()["waiting_reason"]
    stack.start_worker()
    failed = wait_for_job(client, three.json()["id"], {"failed"}, timeout=240)
    assert (
        "asks for 3 devices" in failed["failure_reason"] and "has 2 cpu" in failed["failure_reason"]
    )
    failed = wait_for_job(client, gpu.json()["id"], {"failed"}, timeout=240)
    assert "no online worker has a GPU" in failed["failure_reason"], failed["failure_reason"]

    # Once a worker is online the same specs are refused at submission, naming the field.
    wait_until(lambda: _online(stack), timeout=60, what="the worker to advertise")
    refused = client.post("/jobs", json=tiny_spec(device="cuda"))
    assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "device"
    assert "2 cpu" in refused.json()["detail"][0]["msg"]
    client.post(f"/jobs/{waiting.json()['id']}/cancel")


def test_a_job_cancelled_while_it_waits_is_not_retried(stack: Stack) -> None:
    client = stack.client()
    wait_until(lambda: _online(stack), timeout=120, what="the worker to advertise")
    stack.start_worker()  # a second worker on this host: it shares the first one's two devices
    busy = client.post("/jobs", json=tiny_spec(max_iters=2000, resources={"procs_per_node": 2}))
    wait_until(
        lambda: client.get(f"/jobs/{busy.json()['id']}").json()["phase"] == "running",
        timeout=240,
        what="the first job to start",
    )
    queued = client.post("/jobs", json=tiny_spec(resources={"procs_per_node": 2})).json()["id"]
    wait_until(
        lambda: "free" in (client.get(f"/jobs/{queued}").json().get("waiting_reason") or ""),
        timeout=120,
        what="the second job to wait for devices",
    )
    assert client.post(f"/jobs/{queued}/cancel").json()["phase"] == "cancelled"

    def logs() -> str:
        return "".join(
            p.read_text(errors="replace") for p in sorted(Path(stack.log_dir).glob("worker-*.log"))
        )

    def retries() -> int:
        return len(re.findall(rf"{queued}[^\n]*fewer than 2 devices free", logs()))

    # Stop the busy group too: a retry's message may be held by the busy worker (one job at a
    # time) until its job ends, so its next delivery comes at the latest then.
    client.post(f"/jobs/{busy.json()['id']}/cancel")
    wait_until(
        lambda: client.get(f"/jobs/{busy.json()['id']}").json()["phase"] in ("cancelled", "failed"),
        timeout=240,
        what="the busy group to stop",
    )
    # its next delivery sees the cancellation and drops the message: no retry after that
    wait_until(
        lambda: f"job {queued} is cancelled; not retrying" in logs(),
        timeout=120,
        what="the worker to drop the cancelled job",
    )
    settled = retries()
    time.sleep(3 * 3.0)  # three lease periods: a retry still scheduled would have logged by now
    assert retries() == settled
    assert client.get(f"/jobs/{queued}").json()["phase"] == "cancelled"


def test_concurrent_resumes_queue_the_job_once(stack: Stack) -> None:
    client = stack.client()
    job = client.post("/jobs", json=tiny_spec(max_iters=10_000)).json()["id"]
    wait_until(
        lambda: client.get(f"/jobs/{job}").json()["progress"]["iteration"] >= 6,
        timeout=240,
        what="a first checkpoint",
    )
    client.post(f"/jobs/{job}/cancel")
    wait_for_job(client, job, {"cancelled"}, timeout=240)

    def resume(_: int) -> int:
        with stack.client() as own:
            return own.post(f"/jobs/{job}/resume", json={}).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        codes = sorted(pool.map(resume, range(20)))
    assert codes.count(202) == 1 and set(codes) <= {202, 409}, codes
    client.post(f"/jobs/{job}/cancel")
    wait_for_job(client, job, {"cancelled"}, timeout=240)
