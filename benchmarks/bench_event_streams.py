"""/health and GET /jobs/{id} latency while N clients hold GET /jobs/{id}/events open (issue 25).

    PYTHONPATH=. python benchmarks/bench_event_streams.py --clients 300 --max-streams 64
    PYTHONPATH=. python benchmarks/bench_event_streams.py --clients 300 --max-streams 100000   # no cap

An API process (``astropt api``) on PostgreSQL (127.0.0.1:5432, database ``test``) and Redis;
one queued job (it never finishes, so its streams stay open). The clients connect, the
refused ones (503) count as refused; then 40 sequential requests of each kind are timed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from state.store import repository, session_scope  # noqa: E402
from tests.service.stack import (  # noqa: E402
    Stack,
    postgres_schema,
    redis_url,
    service_env,
    tiny_spec,
    unique_queue,
)


async def hold(base_url: str, path: str, opened: list[int], stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=None) as client:
        try:
            async with client.stream("GET", path) as response:
                opened.append(response.status_code)
                if response.status_code != 200:
                    return
                reading = asyncio.ensure_future(response.aread())
                await stop.wait()
                reading.cancel()
        except httpx.HTTPError:
            opened.append(0)


async def timed(base_url: str, path: str, n: int) -> list[float]:
    times = []
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        for _ in range(n):
            start = time.perf_counter()
            (await client.get(path)).raise_for_status()
            times.append((time.perf_counter() - start) * 1000)
    return times


async def measure(base_url: str, job_id: str, clients: int, requests: int) -> None:
    opened: list[int] = []
    stop = asyncio.Event()
    holders = [
        asyncio.ensure_future(hold(base_url, f"/jobs/{job_id}/events", opened, stop))
        for _ in range(clients)
    ]
    deadline = time.monotonic() + 120
    while len(opened) < clients and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(2.0)  # the open streams poll the store meanwhile
    print(
        f"{clients} clients: {opened.count(200)} streams open, {opened.count(503)} refused (503), "
        f"{len(opened) - opened.count(200) - opened.count(503)} other"
    )
    for path in ("/health", f"/jobs/{job_id}"):
        times = await timed(base_url, path, requests)
        label = "/health" if path == "/health" else "GET /jobs/{id}"
        print(f"  {label:15s} p50 {statistics.median(times):7.1f} ms   max {max(times):7.1f} ms")
    stop.set()
    await asyncio.gather(*holders, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--max-streams", type=int, default=64, help="ASTROPT_MAX_EVENT_STREAMS")
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-events-"))
    with postgres_schema() as database:
        env = service_env(
            root / "data",
            database,
            redis_url(),
            unique_queue(),
            ASTROPT_MAX_EVENT_STREAMS=str(args.max_streams),
            ASTROPT_EVENTS_POLL_SECONDS="1.0",
        )
        (root / "logs").mkdir(parents=True)
        stack = Stack(env, root / "logs")
        try:
            stack.start_api()
            job_id = uuid.uuid4().hex
            with session_scope(database) as session:
                repository.create_job(
                    session, job_id, tiny_spec(), str(root / "data" / "runs" / job_id)
                )
            print(f"ASTROPT_MAX_EVENT_STREAMS={args.max_streams}, events poll 1 s, PostgreSQL")
            for clients in args.clients:
                asyncio.run(measure(stack.base_url, job_id, clients, args.requests))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
