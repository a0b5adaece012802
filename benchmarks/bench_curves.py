"""GET /jobs/{id} p50 at 1k, 10k and 100k points per curve (PostgreSQL), and loss.csv cost per log step.

    PYTHONPATH=. python benchmarks/bench_curves.py --points 1000 10000 100000 --requests 40

Needs PostgreSQL on 127.0.0.1:5432 (database ``test``, trust auth). Each job gets every curve
the API returns (train_loss, val_loss, lr, tokens_per_s, mfu, effective_batch_size) with N
points; GET /jobs/{id} goes over real HTTP to uvicorn with the default ASTROPT_CURVE_MAX_POINTS.
The points go in by COPY (fast), so each job's curve summaries are then built from them, as the
migration builds them for curves stored before it. Then a loss.csv of 100k rows takes one more log step (train row + its evaluation).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from astropt.training.run_log import RunLog  # noqa: E402
from service.app import create_app  # noqa: E402
from service.jobs.service import CURVE_KINDS  # noqa: E402
from state.settings import Settings  # noqa: E402
from state.store import migrate, repository, session_scope, summaries  # noqa: E402
from state.store.models import step_level  # noqa: E402
from tests.service.stack import PG_DSN, ThreadedServer, postgres_schema, tiny_spec  # noqa: E402


def fill(database: str, job_id: str, n: int) -> None:
    with session_scope(database) as session:
        repository.create_job(
            session, job_id, {**tiny_spec(max_iters=n), "out_dir": "/nowhere"}, "/nowhere"
        )
    schema = database.rsplit("%3D", 1)[1]
    with psycopg.connect(PG_DSN) as conn, conn.cursor() as cursor:  # COPY: fast bulk load
        cursor.execute(f'SET search_path TO "{schema}"')
        with cursor.copy(
            "COPY metric_points (job_id, kind, step, value, level, recorded_at) FROM STDIN"
        ) as copy:
            for kind in CURVE_KINDS:
                for step in range(1, n + 1):
                    copy.write_row(
                        (job_id, kind, step, 5.0 - step / n, step_level(step), "2026-12-01")
                    )
        conn.commit()
        cursor.execute("ANALYZE metric_points")
    with session_scope(database) as session:  # COPY goes around upsert_points: build the summaries
        summaries.rebuild(session, job_id)


def p50_get(base_url: str, job_id: str, requests: int) -> float:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for _ in range(3):
            client.get(f"/jobs/{job_id}").raise_for_status()  # warm up
        times = []
        for _ in range(requests):
            start = time.perf_counter()
            client.get(f"/jobs/{job_id}").raise_for_status()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def loss_csv_step_ms(rows: int, steps: int = 200) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        log = RunLog(Path(tmp), 0)
        for step in range(1, rows + 1):
            log.add(step, train_loss=1.0, lr=1e-3, tokens_per_s=1e5)
        start = time.perf_counter()
        for step in range(rows + 1, rows + steps + 1):
            log.add(step, train_loss=1.0, lr=1e-3, tokens_per_s=1e5)
            log.add(step, val_loss=1.0, eval_train_loss=1.0)
        return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--csv-rows", type=int, default=100_000)
    args = parser.parse_args()
    results = {}
    with postgres_schema() as database, tempfile.TemporaryDirectory() as data:
        migrate(database)
        for n in args.points:
            fill(database, f"bench{n}", n)
        settings = Settings(data_dir=Path(data), database_url=database)
        with ThreadedServer(
            create_app(settings, publish=lambda _: None, check_broker=lambda: None)
        ) as server:
            for n in args.points:
                results[n] = p50_get(server.base_url, f"bench{n}", args.requests)
                print(
                    f"GET /jobs/{{id}} with {n:>7} points x {len(CURVE_KINDS)} curves: p50 {results[n]:6.1f} ms",
                    flush=True,
                )
    first, last = results[args.points[0]], results[args.points[-1]]
    print(f"ratio {args.points[-1]} / {args.points[0]} points: {last / first:.2f}x")
    print(
        f"loss.csv at {args.csv_rows} rows: {loss_csv_step_ms(args.csv_rows):.3f} ms per log step "
        "(train row appended + its evaluation merged)"
    )


if __name__ == "__main__":
    main()
