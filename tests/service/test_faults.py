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

from tests.service.proxy import Proxy
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
BOUND_S = 15.0  # what any answer may take while a dependency is silent or down (timeouts are 1 s)


@pytest.fixture
def redis_proxy() -> Iterator[Proxy]:
    proxy = Proxy(6379)
    yield proxy
    proxy.close()


def _stack(tmp_path: Path, broker_url: str, database_url: str | None = None, **extra: str) -> Stack:
    (tmp_path / "logs").mkdir(exist_ok=True)
    env = service_env(tmp_path / "data", database_url, broker_url, unique_queue(),
                      ASTROPT_BROKER_TIMEOUT_SECONDS="1", ASTROPT_DATABASE_TIMEOUT_SECONDS="2", **extra)
    return Stack(env, tmp_path / "logs")


def _timed(client: httpx.Client, method: str, path: str, **kwargs: object) -> tuple[httpx.Response, float]:
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
            wait_until(lambda: client.get("/health").status_code == 503, BOUND_S, "health to turn degraded")
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
