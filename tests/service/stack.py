"""Real processes for service tests: uvicorn API and Celery workers on Redis/SQLite/PostgreSQL."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
import uvicorn

REPO = Path(__file__).resolve().parents[2]
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
API_KEY = "test-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_url() -> str:
    """A random Redis database per test session; queue names are unique as well."""
    return f"redis://127.0.0.1:6379/{random.randint(1, 15)}"


def unique_queue(prefix: str = "train") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema in database ``test``; yields a SQLAlchemy URL that uses it."""
    schema = f"astropt_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def service_env(
    data_dir: Path, database_url: str | None, broker_url: str | None, queue: str, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTROPT_")}
    # The lease (heartbeat every 2 s) is long enough that a starved heartbeat on a loaded 2-core
    # CI machine does not hand a live job to another worker, and short enough that the kill -9
    # tests, which wait for its expiry, do not wait long.
    env.update(
        ASTROPT_DATA_DIR=str(data_dir),
        ASTROPT_TRAIN_QUEUE=queue,
        ASTROPT_API_KEY=API_KEY,
        ASTROPT_WORKER_LEASE_SECONDS="8",
        ASTROPT_CANCEL_POLL_SECONDS="0.2",
        ASTROPT_EVENTS_POLL_SECONDS="0.2",
        ASTROPT_WORKER_CHECKPOINT_INTERVAL="5",
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    if database_url:
        env["ASTROPT_DATABASE_URL"] = database_url
    if broker_url:
        env["ASTROPT_BROKER_URL"] = broker_url
    env.update(extra)
    return env


def tiny_spec(max_iters: int = 30, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "codec": "random:0",
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 576},
        "data": {"source": "mock", "n_mock": 32, "val_fraction": 0.125},
        "batch_size": 2,
        "max_iters": max_iters,
        "eval_interval": 10,
        "eval_iters": 1,
        "log_interval": 1,
        "n_val_images": 2,
        "device": "cpu",
        "optim": {"learning_rate": 3e-3, "warmup_iters": 2},
    }
    spec.update(overrides)
    return spec


class Stack:
    """An API subprocess plus worker subprocesses sharing one environment."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env, self.log_dir = env, log_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / log_name, "ab")  # noqa: SIM115 (closed with the process)
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", *args],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_api(self, *args: str, command: str = "api") -> None:
        self.api = self._spawn(
            [command, "--port", str(self.port), "--log-level", "warning", *args], f"{command}.log"
        )
        wait_until(lambda: _healthy(self.base_url), timeout=60, what="API /health")

    def start_worker(self) -> subprocess.Popen[bytes]:
        worker = self._spawn(["worker", "--loglevel", "info"], f"worker-{len(self.workers)}.log")
        self.workers.append(worker)
        return worker

    def kill_worker(self, worker: subprocess.Popen[bytes]) -> None:
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool process, like a crash
        worker.wait()

    def client(self, with_key: bool = True) -> httpx.Client:
        headers = {"X-API-Key": API_KEY} if with_key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.log_dir.glob("*.log"))
        )

    def stop(self) -> None:
        self._stop_processes()
        broker = self.env.get("ASTROPT_BROKER_URL", "")
        if broker.startswith("redis://"):  # leave nothing of this run's queue behind
            client = redis.Redis.from_url(broker)
            queue = self.env["ASTROPT_TRAIN_QUEUE"]
            keys = [key for key in client.scan_iter(match=f"*{queue}*")]
            if keys:
                client.delete(*keys)

    def _stop_processes(self) -> None:
        for process in [*self.workers, self.api]:
            if process is None or process.poll() is not None:
                continue
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextmanager
def running_stack(env: dict[str, str], log_dir: Path, workers: int = 1) -> Iterator[Stack]:
    """An API and ``workers`` workers for the block; stopped after it, their logs printed."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(env, log_dir)
    try:
        stack.start_api()
        for _ in range(workers):
            stack.start_worker()
        yield stack
    finally:
        stack.stop()
        print(stack.logs())


def _healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.3
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_for_iteration(
    client: httpx.Client, job_id: str, iteration: int, timeout: float = 180
) -> None:
    def reached() -> bool:
        body = client.get(f"/jobs/{job_id}").json()
        if body["phase"] in ("failed", "completed", "cancelled"):
            raise AssertionError(
                f"job {body['phase']} before iteration {iteration}: {body['failure_reason']}"
            )
        return body["progress"]["iteration"] >= iteration

    wait_until(reached, timeout, f"job {job_id} to reach iteration {iteration}")


def wait_for_job(
    client: httpx.Client, job_id: str, phases: set[str], timeout: float = 180
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = client.get(f"/jobs/{job_id}").json()
        if body["phase"] in {"failed"} - phases:
            raise AssertionError(f"job failed: {body['failure_reason']}")
        return body if body["phase"] in phases else None

    return wait_until(done, timeout, f"job {job_id} to reach {sorted(phases)}")


class ThreadedServer:
    """uvicorn in a background thread on a free port (for tests that need no worker)."""

    def __init__(self, app: Any):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=30, what="uvicorn start", interval=0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def run_dir(stack: Stack, job_id: str) -> Path:
    return Path(stack.env["ASTROPT_DATA_DIR"]) / "runs" / job_id


def assert_resumed_from_checkpoint(
    out_dir: Path, final_step: int, killed: bool = False, checkpoint_interval: int = 5
) -> list[dict[str, Any]]:
    """Guards resume: attempt 2 restored attempt 1's checkpoint and went on from its step + 1.

    A worker that restarts from step 0 (``resume=False``) fails here: its second attempt
    has no ``resumed_from`` and starts at step 1. A clean stop (cancel, completion) must
    lose nothing, so no step is trained twice; a killed attempt may only lose the steps
    after its last checkpoint.
    """
    from astropt.training.attempts import read_attempts

    first, second = read_attempts(out_dir)
    assert first["attempt"] == 1 and first["resumed_from"] is None and first["first_step"] == 1, (
        first
    )
    restored = second["resumed_from"]
    assert second["attempt"] == 2 and restored is not None and restored > 0, second
    assert second["first_step"] == restored + 1, second
    assert second["last_step"] == final_step, second
    if killed:  # the steps after the restored checkpoint were lost with the process: at most an
        # interval's worth, all of it when the kill came between a step and its checkpoint's write
        assert first["last_checkpoint"] <= restored <= first["last_step"], (first, second)
        assert (
            restored % checkpoint_interval == 0
            and first["last_step"] - restored <= checkpoint_interval
        )
    else:  # nothing lost, nothing trained twice
        assert restored == first["last_step"] == first["last_checkpoint"], (first, second)
    return [first, second]


def assert_best_checkpoint_is_the_minimum(job: dict[str, Any]) -> None:
    """``best_val_loss`` and the ``best`` checkpoint describe the lowest val loss of all attempts."""
    val = job["curves"]["val_loss"]
    best_at = val["steps"][val["values"].index(min(val["values"]))]
    assert job["best_val_loss"] == pytest.approx(min(val["values"]), rel=1e-5)
    assert {c["name"]: c["step"] for c in job["checkpoints"]}["best"] == best_at
