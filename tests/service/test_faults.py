"""Faults through real parts: a silent or dead Redis, PostgreSQL cut mid-run (TCP proxies the test
controls), SIGTERM to ``astropt serve``. Every test has a hard time limit: a hang fails it."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from state.store.models import Job
from tests.service.proxy import Proxy
from tests.service.stack import (
    Stack,
    postgres_schema,
    redis_url,
    service_env,
    tiny_spec,
    unique_queue,
    wait_for_iteration,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.slow
BOUND_S = 15.0  # what any answer may take while a dependency is silent or down (timeouts are 1 s)


@pytest.fixture
def redis_proxy() -> Iterator[Proxy]:
    proxy = Proxy(6379)
    yield proxy
    proxy.close()


def _stack(tmp_path: Path, broker_url: str, database_url: str | None = None, **extra: str) -> Stack:
    (tmp_path / "logs").mkdir(exist_ok=True)
    env = service_env(
        tmp_path / "data",
        database_url,
        broker_url,
        unique_queue(),
        ASTROPT_BROKER_TIMEOUT_SECONDS="1",
        ASTROPT_DATABASE_TIMEOUT_SECONDS="2",
        # longer than the outages below (heartbeats fail while the store is down)
        ASTROPT_WORKER_LEASE_SECONDS="20",
        **extra,
    )
    return Stack(env, tmp_path / "logs")


def _timed(
    client: httpx.Client, method: str, path: str, **kwargs: object
) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    return response, time.monotonic() - start


@pytest.mark.timeout(180)
def test_a_silent_broker_never_hangs_the_api(tmp_path: Path, redis_proxy: Proxy) -> None:
    db = redis_url().rsplit("/", 1)[1]
    stack = _stack(tmp_path, redis_proxy.url("redis", f"/{db}"))
    try:
        stack.start_api()
        redis_proxy.silence()  # accepts connections, pooled and new, and never answers
        with stack.client() as client:
            client.timeout = httpx.Timeout(BOUND_S * 2)
            # the last good answer is reused for a second; then the probe finds the silence
            wait_until(
                lambda: client.get("/health").status_code == 503, BOUND_S, "health to turn degraded"
            )
            # many probes at once: they share one broker call and none takes a request thread
            with concurrent.futures.ThreadPoolExecutor(60) as pool:
                probes = list(pool.map(lambda _: _timed(client, "GET", "/health"), range(60)))
            for response, seconds in probes:
                assert response.status_code == 503 and seconds < BOUND_S, (response.text, seconds)
                body = response.json()
                assert body["status"] == "degraded" and body["database"] == "ok"
                assert body["broker"].startswith("error:"), body
            posted, seconds = _timed(client, "POST", "/jobs", json=tiny_spec())
            assert posted.status_code == 503 and seconds < BOUND_S, (posted.text, seconds)
            assert "broker unavailable" in posted.json()["detail"]
            listed, seconds = _timed(client, "GET", "/jobs")  # the rest of the API still answers
            assert listed.status_code == 200 and seconds < BOUND_S
            (job,) = listed.json()["items"]
            assert job["phase"] == "failed" and "broker unavailable" in job["failure_reason"]
            redis_proxy.forward()
            wait_until(lambda: client.get("/health").status_code == 200, 30, "health back")
    finally:
        redis_proxy.forward()
        stack.stop()


@pytest.mark.timeout(300)
def test_resume_while_the_broker_is_down_keeps_the_job_completed(
    tmp_path: Path, redis_proxy: Proxy
) -> None:
    direct = redis_url()
    stack = _stack(tmp_path, redis_proxy.url("redis", "/" + direct.rsplit("/", 1)[1]))
    try:
        stack.start_api()  # the API reaches Redis through the proxy, the worker directly
        stack.env = {**stack.env, "ASTROPT_BROKER_URL": direct}
        stack.start_worker()
        with stack.client() as client:
            job = client.post("/jobs", json=tiny_spec(max_iters=6, eval_interval=3)).json()
            done = wait_for_job(client, job["id"], {"completed"})
            redis_proxy.cut()
            refused, seconds = _timed(
                client, "POST", f"/jobs/{job['id']}/resume", json={"max_iters": 12}
            )
            assert refused.status_code == 503 and seconds < BOUND_S, (refused.text, seconds)
            assert "left completed" in refused.json()["detail"]
            after = client.get(f"/jobs/{job['id']}").json()
            assert after["phase"] == "completed" and after["failure_reason"] is None
            assert (
                after["finished_at"] == done["finished_at"] and after["progress"]["max_iters"] == 6
            )
            embedded = client.post(
                "/embed", files={"file": ("g.npy", _npy_cube())}
            )  # the default model
            assert embedded.status_code == 200, embedded.text
            redis_proxy.forward()
            assert (
                client.post(f"/jobs/{job['id']}/resume", json={"max_iters": 12}).status_code == 202
            )
            resumed = wait_for_job(client, job["id"], {"completed"})
            assert resumed["progress"]["iteration"] == 12
    finally:
        redis_proxy.forward()
        stack.stop()


def _npy_cube() -> bytes:
    import io

    import numpy as np

    out = io.BytesIO()
    np.save(out, np.random.default_rng(0).gamma(1.0, 0.3, (4, 128, 128)).astype(np.float32))
    return out.getvalue()


@pytest.mark.timeout(300)
def test_a_job_recorded_but_never_published_is_published_by_the_sweep(tmp_path: Path) -> None:
    from datetime import timedelta

    from service.jobs.schemas import JobSpec
    from state.store import migrate, repository, session_scope
    from state.store.models import utcnow

    with postgres_schema() as database:
        stack = _stack(tmp_path, redis_url(), database)
        try:
            stack.start_api()
            migrate(database)
            job_id, out_dir = (
                "stranded0000000000000000000000",
                tmp_path / "data" / "runs" / "stranded",
            )
            body = {
                **JobSpec.model_validate(tiny_spec(max_iters=4)).model_dump(mode="json"),
                "out_dir": str(out_dir),
            }
            with session_scope(database) as session:  # what the API did before it died: no message
                repository.create_job(session, job_id, body, str(out_dir))
                repository.update_job(session, job_id, resources={"world_size": 1})
            with session_scope(database) as session:
                session.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(updated_at=utcnow() - timedelta(hours=1))
                )
            stack.start_worker()  # its recovery sweep finds the stranded job at start-up
            with stack.client() as client:
                done = wait_for_job(client, job_id, {"completed"})
            assert done["attempts"] == 1 and done["progress"]["iteration"] == 4
        finally:
            stack.stop()


@pytest.fixture
def pg_proxy() -> Iterator[Proxy]:
    proxy = Proxy(5432)
    yield proxy
    proxy.close()


def _through(proxy: Proxy, database: str) -> str:
    return database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")


@pytest.mark.timeout(180)
def test_postgres_down_gives_json_503s_that_are_counted(tmp_path: Path, pg_proxy: Proxy) -> None:
    with postgres_schema() as database:
        stack = _stack(tmp_path, redis_url(), _through(pg_proxy, database))
        try:
            stack.start_api()
            with stack.client() as client:
                assert client.get("/jobs").status_code == 200
                pg_proxy.cut()
                # /health reuses its last answer for a second, then finds the store gone
                wait_until(
                    lambda: client.get("/health").status_code == 503,
                    BOUND_S,
                    "health to turn degraded",
                )
                for path in ("/jobs", "/jobs/0123", "/health"):
                    response, seconds = _timed(client, "GET", path)
                    assert response.status_code == 503 and seconds < BOUND_S, (
                        path,
                        response.text,
                        seconds,
                    )
                    assert response.headers["content-type"] == "application/json", path
                assert "database unavailable" in client.get("/jobs").json()["detail"]
                assert client.get("/health").json()["database"].startswith("error:")
                posted, _ = _timed(client, "POST", "/jobs", json=tiny_spec())
                assert posted.status_code == 503 and posted.json()["detail"]
                metrics = client.get("/metrics").text
                assert (
                    'astropt_http_requests_total{method="GET",route="/jobs",status="503"}'
                    in metrics
                )
                assert 'route="/jobs",status="503"' in metrics and "astropt_store_up 0.0" in metrics
                assert 'astropt_jobs{phase="queued"}' not in metrics  # no zeros from a dead store
                pg_proxy.forward()
                wait_until(
                    lambda: client.get("/jobs").status_code == 200, BOUND_S, "the store back"
                )
                assert "astropt_store_up 1.0" in client.get("/metrics").text
        finally:
            stack.stop()


@pytest.mark.timeout(400)
def test_a_database_outage_mid_run_costs_the_run_nothing(tmp_path: Path, pg_proxy: Proxy) -> None:
    from astropt.training.attempts import read_attempts

    with postgres_schema() as database:
        stack = _stack(tmp_path, redis_url(), database)
        try:
            stack.start_api()  # the API reaches PostgreSQL directly, the worker through the proxy
            stack.env = {**stack.env, "ASTROPT_DATABASE_URL": _through(pg_proxy, database)}
            stack.start_worker()
            with stack.client() as client:
                job = client.post("/jobs", json=tiny_spec(max_iters=40)).json()
                wait_for_iteration(client, job["id"], 8)
                pg_proxy.cut()
                time.sleep(5)  # the outage (shorter than the 20 s lease)
                pg_proxy.forward()
                done = wait_for_job(client, job["id"], {"completed"})
            assert done["attempts"] == 1, done  # never restarted
            out_dir = Path(stack.env["ASTROPT_DATA_DIR"]) / "runs" / job["id"]
            (attempt,) = read_attempts(out_dir)
            assert attempt["first_step"] == 1 and attempt["last_step"] == 40
            assert done["curves"]["train_loss"]["steps"] == list(range(1, 41))  # no point lost
            assert done["curves"]["val_loss"]["steps"] == [0, 10, 20, 30, 40]
        finally:
            stack.stop()


@pytest.mark.timeout(240)
def test_sigterm_to_serve_leaves_no_process_behind(tmp_path: Path) -> None:
    stack = _stack(tmp_path, "")
    stack.env.pop("ASTROPT_BROKER_URL", None)  # standalone: filesystem broker, SQLite
    try:
        stack.start_api(command="serve")
        assert stack.api is not None
        with stack.client() as client:
            job = client.post("/jobs", json=tiny_spec(max_iters=100000)).json()
            wait_for_iteration(client, job["id"], 2)  # the worker's pool process trains it
        family = _descendants(stack.api.pid)
        assert len(family) >= 2, family  # the worker and its pool process
        os.kill(stack.api.pid, signal.SIGTERM)  # what systemd, Docker and a closed terminal send
        stack.api.wait(timeout=60)
        wait_until(lambda: not [pid for pid in family if _alive(pid)], 30, f"{family} to exit")
    finally:
        stack.stop()


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
