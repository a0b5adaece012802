"""How long a tiny training job takes from ``POST /jobs`` to its first step and to its end, with
the worker preloading the training code (``ASTROPT_WORKER_PRELOAD``, the default) and without.

    PYTHONPATH=. python benchmarks/bench_job_start.py --jobs 6

Starts a real API and Celery worker (SQLite, Redis) per setting, runs ``--jobs`` jobs one after
another (each a fresh pool process), and prints the median seconds of each setting. Needs Redis
on 127.0.0.1:6379, as the tests do.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from tests.service.stack import (
    Stack,
    redis_url,
    service_env,
    tiny_spec,
    unique_queue,
    wait_for_job,
    wait_until,
)


def run_jobs(preload: bool, jobs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-job-start-") as tmp:
        root = Path(tmp)
        (root / "logs").mkdir()
        env = service_env(
            root / "data",
            f"sqlite:///{root / 'jobs.db'}",
            redis_url(),
            unique_queue(),
            ASTROPT_WORKER_PRELOAD=str(preload).lower(),
        )
        stack = Stack(env, root / "logs")
        try:
            stack.start_api()
            stack.start_worker()
            client = stack.client()
            first_step, total = [], []
            for _ in range(jobs + 1):  # the first job also waits for the worker to start
                start = time.perf_counter()
                job = client.post("/jobs", json=tiny_spec(max_iters=3, eval_interval=3)).json()[
                    "id"
                ]
                wait_until(
                    lambda job=job: client.get(f"/jobs/{job}").json()["progress"]["iteration"] >= 1,
                    timeout=300,
                    what="the first step",
                    interval=0.05,
                )
                first_step.append(time.perf_counter() - start)
                wait_for_job(client, job, {"completed"}, timeout=300)
                total.append(time.perf_counter() - start)
        finally:
            stack.stop()
    return {
        "first_step_s": round(statistics.median(first_step[1:]), 2),
        "job_s": round(statistics.median(total[1:]), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=6)
    args = parser.parse_args()
    results = {
        "preload": run_jobs(True, args.jobs),
        "no_preload": run_jobs(False, args.jobs),
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
