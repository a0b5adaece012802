"""Multi-process jobs through the HTTP API: a torchrun process group (gloo) owned by a Celery worker."""

from __future__ import annotations

import json
import os
import signal
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
    wait_for_iteration,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.slow


def job_processes(job_id: str) -> dict[int, dict[str, str]]:
    """Live processes started for ``job_id`` (torchrun and its ranks): pid -> selected environment."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if job_id.encode() in cmdline:
            env = dict(
                item.decode(errors="replace").split("=", 1) for item in environ if b"=" in item
            )
            found[int(entry.name)] = {k: env[k] for k in ("RANK", "LOCAL_RANK") if k in env}
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("distributed-stack")
    database = f"sqlite:///{tmp / 'jobs.db'}"
    env = service_env(
        tmp / "data",
        database,
        redis_url(),
        unique_queue(),
        ASTROPT_WORKER_DEVICES="2",
        ASTROPT_DISTRIBUTED_MAX_RESTARTS="1",
    )
    (tmp / "logs").mkdir()
    stack = Stack(env, tmp / "logs")
    try:
        stack.start_api()
        stack.start_worker()

        def advertised() -> bool:
            with session_scope(database) as session:
                return bool(workers.live(session, 30))

        wait_until(advertised, timeout=120, what="the worker to advertise its capacity")
        yield stack
    finally:
        stack.stop()
        print(stack.logs())


def two_procs(**overrides: object) -> dict:
    return tiny_spec(resources={"procs_per_node": 2}, **overrides)


def test_more_processes_than_any_worker_has_is_refused(stack: Stack) -> None:
    response = stack.client().post("/jobs", json=tiny_spec(resources={"procs_per_node": 3}))
    assert response.status_code == 422
    issue = response.json()["detail"][0]
    assert issue["field"] == "resources.procs_per_node"
    assert "has 2 cpu device(s)" in issue["msg"], issue
    nodes = stack.client().post("/jobs", json=tiny_spec(resources={"nodes": 2}))
    assert nodes.status_code == 422 and "slurm" in nodes.json()["detail"][0]["msg"]


def test_two_process_job_completes_on_disjoint_galaxies(stack: Stack) -> None:
    client = stack.client()
    job_id = client.post("/jobs", json=two_procs(max_iters=12, eval_interval=6)).json()["id"]
    job = wait_for_job(client, job_id, {"completed"}, timeout=600)
    assert job["resources"]["world_size"] == 2 and job["progress"]["world_size"] == 2
    assert job["resources"]["effective_batch_size"] == 2 * 1 * 2
    assert job["progress"]["effective_batch_size"] == 4
    assert job["curves"]["train_loss"]["steps"] == list(range(1, 13))  # rank 0 only: no duplicates
    assert set(job["curves"]["effective_batch_size"]["values"]) == {4.0}
    assert job["progress"]["mfu"] is None  # a CPU has no peak in the table
    run = Path(job["spec"]["out_dir"])
    ranks = [json.loads((run / f"data_rank{r}.json").read_text()) for r in (0, 1)]
    ids0, ids1 = set(ranks[0]["object_ids"]), set(ranks[1]["object_ids"])
    assert ids0 and ids1 and not ids0 & ids1
    assert {c["name"] for c in job["checkpoints"]} >= {"best", "last"}
    assert not job_processes(job_id)


def test_cancel_stops_every_rank_after_a_checkpoint(stack: Stack) -> None:
    client = stack.client()
    job_id = client.post("/jobs", json=two_procs(max_iters=5000, eval_interval=1000)).json()["id"]
    wait_for_iteration(client, job_id, 3, timeout=600)
    assert len(job_processes(job_id)) == 3  # torchrun and two ranks
    metrics = stack.client().get("/metrics").text
    assert f'astropt_job_world_size{{job_id="{job_id}"}} 2.0' in metrics
    assert f'astropt_job_tokens_per_second{{job_id="{job_id}"}}' in metrics
    client.post(f"/jobs/{job_id}/cancel")
    job = wait_for_job(client, job_id, {"cancelled"}, timeout=120)
    stopped = job["progress"]["iteration"]
    assert {c["name"]: c["step"] for c in job["checkpoints"]}["last"] == stopped
    wait_until(
        lambda: not job_processes(job_id), timeout=30, what="every process of the job to end"
    )


def test_a_killed_rank_takes_the_group_down_and_it_resumes(stack: Stack) -> None:
    client = stack.client()
    job_id = client.post("/jobs", json=two_procs(max_iters=30, eval_interval=10)).json()["id"]
    wait_for_iteration(client, job_id, 12, timeout=600)  # checkpoints every 5 (forced in tests)
    rank1 = [pid for pid, env in job_processes(job_id).items() if env.get("RANK") == "1"]
    assert len(rank1) == 1
    os.kill(rank1[0], signal.SIGKILL)
    job = wait_for_job(client, job_id, {"completed"}, timeout=600)
    assert job["resources"]["group_restarts"] == 1
    resumed_from = job["resources"]["resumed_from"]
    assert resumed_from >= 10 and resumed_from % 5 == 0
    assert job["curves"]["train_loss"]["steps"] == list(range(1, 31))
    assert not job_processes(job_id)


def test_a_killed_worker_leaves_no_rank_behind_and_the_job_resumes(stack: Stack) -> None:
    client = stack.client()
    job_id = client.post("/jobs", json=two_procs(max_iters=24, eval_interval=12)).json()["id"]
    wait_for_iteration(client, job_id, 8, timeout=600)
    assert len(job_processes(job_id)) == 3
    stack.kill_worker(stack.workers[0])  # SIGKILL to the worker and its pool process
    wait_until(
        lambda: not job_processes(job_id), timeout=60, what="torchrun and its ranks to die too"
    )
    stack.start_worker()
    job = wait_for_job(client, job_id, {"completed"}, timeout=600)
    assert job["attempts"] == 2 and job["resources"]["resumed_from"] >= 5
    assert job["curves"]["train_loss"]["steps"] == list(range(1, 25))


def test_a_two_rank_tokenise_job_writes_disjoint_shards_that_cover_the_source(stack: Stack) -> None:
    from astropt.tokens import open_token_dataset
    from tests.service.stack import run_dir

    client = stack.client()
    spec = {
        "kind": "tokenise",
        "codec": "shipped",
        "device": "cpu",
        "resources": {"procs_per_node": 2},
        "data": {"source": "mock", "n_mock": 96, "mock_seed": 4},
        "tokenise": {"shard_size": 16, "batch_size": 8, "num_workers": 0},
    }
    created = client.post("/jobs", json=spec)
    assert created.status_code == 201, created.text
    job = wait_for_job(client, created.json()["id"], {"completed"}, timeout=400)
    assert job["progress"]["iteration"] == 96 and job["resources"]["world_size"] == 2
    dataset = open_token_dataset(run_dir(stack, job["id"]) / "tokens")
    ranks = {shard["rank"] for shard in dataset.manifest["shards"]}
    ids = dataset.object_ids()
    assert ranks == {0, 1} and dataset.manifest["world_size"] == 2
    assert len(ids) == len(set(ids)) == 96 and set(ids) == {f"mock-s4-{i:08d}" for i in range(96)}
