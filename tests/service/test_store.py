"""The job store on SQLite and PostgreSQL: migrations, upserts, claims, checkpoint lookup."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from service.jobs.service import downsample
from state.store import (
    best_checkpoint_dir,
    get_engine,
    latest_completed_job,
    migrate,
    session_scope,
    workers,
)
from state.store import repository as repo
from state.store.db import alembic_config
from state.store.models import utcnow
from state.store.recovery import reap_orphan
from tests.service.stack import postgres_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        database = f"sqlite:///{tmp_path / 'store.db'}"
        migrate(database)
        yield database
        return
    with postgres_schema() as database:
        migrate(database)
        yield database
        get_engine(database).dispose()


def test_migrations_create_the_schema_and_rerun_cleanly(url: str) -> None:
    migrate(url)  # second run is a no-op
    tables = set(inspect(get_engine(url)).get_table_names())
    assert {"jobs", "metric_points", "alembic_version"} <= tables
    with get_engine(url).connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version == ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert {"workers"} <= tables  # 0002_gpu_resources
    columns = {c["name"]: c["type"] for c in inspect(get_engine(url)).get_columns("metric_points")}
    assert (
        columns["step"].python_type is int
        and "BIGINT" in str(columns["step"]).upper()
        or url.startswith("sqlite")
    )


def test_workers_advertise_capacity(url: str) -> None:
    with session_scope(url) as session:
        workers.advertise(session, "node1:10", "node1", "cuda", 4, 3)
        workers.advertise(session, "node2:11", "node2", "cuda", 8, 8)
        workers.advertise(session, "node1:10", "node1", "cuda", 4, 1)  # the next beat updates
    with session_scope(url) as session:
        live = workers.live(session, 60)
        assert [(w.name, w.devices, w.free_devices) for w in live] == [
            ("node2:11", 8, 8),
            ("node1:10", 4, 1),
        ]
        assert workers.live(session, 0) == []


def test_upsert_never_duplicates_a_step(url: str) -> None:
    with session_scope(url) as session:
        repo.create_job(session, "j1", {"max_iters": 10}, "/tmp/j1")
        repo.upsert_points(session, "j1", [("train_loss", s, 5.0 - s / 10) for s in range(1, 8)])
    with session_scope(url) as session:  # a redelivered job re-runs steps 5..7 with new values
        repo.upsert_points(session, "j1", [("train_loss", s, 1.0) for s in (5, 6, 7)])
        curve = repo.get_points(session, "j1", ["train_loss"])["train_loss"]
    assert [s for s, _ in curve] == [1, 2, 3, 4, 5, 6, 7]
    assert [v for _, v in curve][4:] == [1.0, 1.0, 1.0]
    with session_scope(url) as session:
        assert repo.delete_points_after(session, "j1", 5) == 2
        assert [
            s for s, _ in repo.get_points(session, "j1", ["train_loss"], since=3)["train_loss"]
        ] == [4, 5]


def test_only_one_worker_claims_a_job_until_its_lease_expires(url: str) -> None:
    with session_scope(url) as session:
        repo.create_job(session, "j2", {"max_iters": 10}, "/tmp/j2")
    with session_scope(url) as session:
        assert repo.claim_job(session, "j2", "worker-a")
        assert not repo.claim_job(session, "j2", "worker-b")
        assert repo.orphaned_jobs(session, 60) == []
        assert reap_orphan(session, "j2", 60, max_attempts=3) is None  # alive
    with session_scope(url) as session:  # worker-a stops heart-beating
        repo.update_job(session, "j2", heartbeat_at=utcnow() - timedelta(seconds=120))
    with session_scope(url) as session:
        assert not repo.claim_job(session, "j2", "worker-b")  # a stale job is settled, not grabbed
        assert [job.id for job in repo.orphaned_jobs(session, 60)] == ["j2"]
        assert reap_orphan(session, "j2", 60, max_attempts=3) == "requeued"
        assert reap_orphan(session, "j2", 60, max_attempts=3) is None
        assert repo.claim_job(session, "j2", "worker-b")
        job = repo.get_job(session, "j2")
        assert (job.owner, job.attempts, job.phase) == ("worker-b", 2, "running")
        assert [(i["attempt"], i["worker"]) for i in job.interruptions] == [(1, "worker-a")]


def test_a_job_whose_worker_keeps_dying_fails_after_its_last_attempt(url: str) -> None:
    with session_scope(url) as session:
        repo.create_job(session, "j3", {"max_iters": 10}, "/tmp/j3")
    for attempt, worker in ((1, "node-a:11"), (2, "node-b:12")):
        with session_scope(url) as session:
            assert repo.claim_job(session, "j3", worker)
            repo.update_job(session, "j3", heartbeat_at=utcnow() - timedelta(seconds=120))
        with session_scope(url) as session:
            outcome = reap_orphan(session, "j3", 60, max_attempts=2)
            job = repo.get_job(session, "j3")
            reason = f"worker {worker} died (lost heartbeat) during attempt {attempt} of 2"
            if attempt == 1:
                assert (outcome, job.phase) == ("requeued", "queued")
                assert job.waiting_reason.startswith(reason) and job.failure_reason is None
            else:
                assert (outcome, job.phase) == ("failed", "failed")
                assert (
                    job.failure_reason
                    == f"{reason}; no attempts left (setting ASTROPT_MAX_ATTEMPTS)"
                )
                assert job.finished_at is not None and job.owner is None
    with session_scope(url) as session:
        assert not repo.claim_job(session, "j3", "node-c:13")  # failed stays failed
        assert [i["attempt"] for i in repo.get_job(session, "j3").interruptions] == [1, 2]


def test_steps_beyond_32_bits_and_non_finite_values(url: str) -> None:
    big = 2**40 + 7
    with session_scope(url) as session:
        repo.create_job(session, "j4", {"max_iters": 10}, "/tmp/j4")
        repo.upsert_points(
            session,
            "j4",
            [
                ("train_loss", big, 1.5),
                ("train_loss", 3, math.nan),
                ("train_loss", 4, math.inf),
                ("val_loss", 5, 2.0),
            ],
        )
        repo.update_job(session, "j4", iteration=big, max_iters=big + 1, best_val_step=big)
    with session_scope(url) as session:
        assert repo.get_points(session, "j4", ["train_loss"])["train_loss"] == [(big, 1.5)]
        assert repo.get_points(session, "j4", ["train_loss"], since=big - 1)["train_loss"] == [
            (big, 1.5)
        ]
        job = repo.get_job(session, "j4")
        assert (job.iteration, job.max_iters, job.best_val_step) == (big, big + 1, big)


def test_best_checkpoint_and_latest_completed_job(url: str, tmp_path: Path) -> None:
    with session_scope(url) as session:
        for name in ("old", "new", "running"):
            repo.create_job(session, name, {"max_iters": 10}, str(tmp_path / name))
    (tmp_path / "new" / "checkpoints" / "last").mkdir(parents=True)
    (tmp_path / "new" / "checkpoints" / "last" / "model.safetensors").write_bytes(b"x")
    with session_scope(url) as session:
        repo.finish_job(session, "old", "completed")
    with session_scope(url) as session:
        repo.finish_job(session, "new", "completed")
        repo.claim_job(session, "running", "w")
    with session_scope(url) as session:
        assert latest_completed_job(session).id == "new"
        assert best_checkpoint_dir(session, "new") == tmp_path / "new" / "checkpoints" / "last"
        assert best_checkpoint_dir(session, "old") is None  # no checkpoint on disk
        assert best_checkpoint_dir(session, "running") is None  # not completed
    (tmp_path / "new" / "checkpoints" / "best").mkdir()
    (tmp_path / "new" / "checkpoints" / "best" / "model.safetensors").write_bytes(b"x")
    with session_scope(url) as session:
        assert best_checkpoint_dir(session, "new") == tmp_path / "new" / "checkpoints" / "best"


def test_deleting_a_job_removes_its_points(url: str) -> None:
    with session_scope(url) as session:
        repo.create_job(session, "j3", {"max_iters": 10}, "/tmp/j3")
        repo.upsert_points(session, "j3", [("val_loss", 10, 3.0)])
    with session_scope(url) as session:
        repo.delete_job(session, "j3")
    with session_scope(url) as session:
        assert repo.get_job(session, "j3") is None
        assert repo.get_points(session, "j3", ["val_loss"]) == {"val_loss": []}


def test_downsample_keeps_ends_and_spacing() -> None:
    points = [(s, float(s)) for s in range(1, 1001)]
    kept = downsample(points, 50)
    assert len(kept) == 50 and kept[0] == (1, 1.0) and kept[-1] == (1000, 1000.0)
    gaps = {b[0] - a[0] for a, b in zip(kept, kept[1:], strict=False)}
    assert gaps <= {20, 21}
    assert downsample(points[:10], 50) == points[:10]


def test_migration_0003_keeps_existing_rows_and_widens_steps(tmp_path: Path) -> None:
    from alembic import command

    for database in (f"sqlite:///{tmp_path / 'old.db'}", None):
        with postgres_schema() if database is None else _same(database) as url:
            with get_engine(url).begin() as connection:
                config = alembic_config(url)
                config.attributes["connection"] = connection
                command.upgrade(config, "0002_gpu_resources")
                connection.execute(
                    text(
                        "INSERT INTO jobs (id, phase, spec, out_dir, created_at, updated_at, attempts, "
                        "cancel_requested, iteration, max_iters, checkpoints) VALUES ('old', 'completed', '{}', "
                        "'/tmp/old', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1, false, 7, 7, '{}')"
                    )
                )
                connection.execute(
                    text(
                        "INSERT INTO metric_points (job_id, kind, step, value, recorded_at) "
                        "VALUES ('old', 'train_loss', 7, 1.25, CURRENT_TIMESTAMP)"
                    )
                )
            migrate(url)
            with session_scope(
                url
            ) as session:  # the rows survived (no cascade from a table rebuild)
                assert repo.get_points(session, "old", ["train_loss"])["train_loss"] == [(7, 1.25)]
                repo.upsert_points(session, "old", [("train_loss", 2**40, 1.0)])
                assert repo.get_job(session, "old").interruptions is None
            with session_scope(url) as session:
                assert repo.get_points(session, "old", ["train_loss"], since=7)["train_loss"] == [
                    (2**40, 1.0)
                ]
            get_engine(url).dispose()


@contextmanager
def _same(url: str) -> Iterator[str]:
    yield url
