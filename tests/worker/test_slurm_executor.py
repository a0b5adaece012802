"""The Slurm executor against a real one-node cluster (scripts/slurm-up): sbatch, squeue, scancel."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.stack import (
    REPO,
    Stack,
    redis_url,
    running_stack,
    service_env,
    tiny_spec,
    unique_queue,
    wait_for_iteration,
    wait_for_job,
    wait_until,
)
from tests.worker.test_distributed_jobs import job_processes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> None:
    if os.geteuid() != 0 and shutil.which("sbatch") is None:
        message = "starting a Slurm cluster needs root (scripts/slurm-up) or an existing cluster"
        if os.environ.get("CI"):
            pytest.fail(message)  # .ci/run starts one: in CI a missing cluster is a failure
        pytest.skip(message)
    done = subprocess.run(
        [str(REPO / "scripts" / "slurm-up")], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def stack(cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("slurm-stack")
    env = service_env(
        tmp / "data",
        f"sqlite:///{tmp / 'jobs.db'}",
        redis_url(),
        unique_queue(),
        ASTROPT_EXECUTOR="slurm",
        ASTROPT_SLURM_PROCS_PER_NODE="2",
        ASTROPT_SLURM_POLL_SECONDS="0.5",
        ASTROPT_DISTRIBUTED_MAX_RESTARTS="1",
    )
    with running_stack(env, tmp / "logs") as stack:
        yield stack


def two_procs(**overrides: object) -> dict:
    return tiny_spec(resources={"procs_per_node": 2}, **overrides)


def squeue_ids() -> set[str]:
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30
    ).stdout
    return set(out.split())


def test_beyond_the_cluster_is_refused(stack: Stack) -> None:
    response = stack.client().post("/jobs", json=tiny_spec(resources={"nodes": 2}))
    assert response.status_code == 422
    assert "at most 1" in response.json()["detail"][0]["msg"]


def test_two_process_job_runs_as_a_slurm_allocation(stack: Stack) -> None:
    client = stack.client()
    job_id = client.post("/jobs", json=two_procs(max_iters=12, eval_interval=6)).json()["id"]
    job = wait_for_job(client, job_id, {"completed"}, timeout=600)
    resources = job["resources"]
    assert resources["executor"] == "slurm" and resources["slurm_state"] == "COMPLETED"
    assert resources["world_size"] == 2 and job["progress"]["world_size"] == 2
    assert job["curves"]["train_loss"]["steps"] == list(range(1, 13))
    run = Path(job["spec"]["out_dir"])
    script = (run / "slurm" / "job.sbatch").read_text()
    assert "--nproc-per-node=2" in script and "--rdzv-backend=c10d" in script
    assert (run / "slurm" / f"slurm-{resources['slurm_job_id']}.out").is_file()
    ranks = [json.loads((run / f"data_rank{r}.json").read_text()) for r in (0, 1)]
    assert not set(ranks[0]["object_ids"]) & set(ranks[1]["object_ids"])


def test_cancel_goes_through_scancel_and_checkpoints(stack: Stack) -> None:
    client = stack.client()
    job_id = client.post("/jobs", json=two_procs(max_iters=5000, eval_interval=1000)).json()["id"]
    wait_for_iteration(client, job_id, 3, timeout=600)
    slurm_id = client.get(f"/jobs/{job_id}").json()["resources"]["slurm_job_id"]
    assert slurm_id in squeue_ids()
    client.post(f"/jobs/{job_id}/cancel")
    job = wait_for_job(client, job_id, {"cancelled"}, timeout=300)
    assert job["resources"]["slurm_cancel"] == "scancel --signal=TERM"
    assert {c["name"]: c["step"] for c in job["checkpoints"]}["last"] == job["progress"][
        "iteration"
    ]
    wait_until(lambda: slurm_id not in squeue_ids(), timeout=120, what="the allocation to end")
    wait_until(lambda: not job_processes(job_id), timeout=60, what="every rank to end")


def test_a_killed_rank_in_the_allocation_resumes_from_its_checkpoint(stack: Stack) -> None:
    client = stack.client()
    job_id = client.post("/jobs", json=two_procs(max_iters=30, eval_interval=10)).json()["id"]
    wait_for_iteration(client, job_id, 12, timeout=600)  # checkpoints every 5 (forced in tests)
    rank1 = [pid for pid, env in job_processes(job_id).items() if env.get("RANK") == "1"]
    assert len(rank1) == 1
    os.kill(rank1[0], signal.SIGKILL)
    job = wait_for_job(client, job_id, {"completed"}, timeout=600)
    resources = job["resources"]
    assert resources["slurm_submissions"] == 2, (
        resources
    )  # the failed allocation was submitted again
    assert resources["resumed_from"] >= 10 and resources["resumed_from"] % 5 == 0
    assert job["curves"]["train_loss"]["steps"] == list(range(1, 31))
    wait_until(lambda: not job_processes(job_id), timeout=60, what="every rank to end")
