"""Curve summaries (state/store/summaries.py): a whole curve is read from a bounded number of
rows and values whatever its length, every point stays stored, and the summaries follow every
write (upserts in any order, overwrites, deleted points, the migration's backfill); SQLite and
PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from service.jobs.service import CURVE_KINDS, curves
from state.store import get_engine, migrate, session_scope, summaries
from state.store import repository as repo
from state.store.db import alembic_config
from state.store.models import step_level
from tests.service.stack import postgres_schema, tiny_spec


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


def _create(url: str, job_id: str, max_iters: int) -> None:
    with session_scope(url) as session:
        repo.create_job(
            session, job_id, {**tiny_spec(max_iters=max_iters), "out_dir": "/nowhere"}, "/nowhere"
        )


class _CountingCursor:
    """A DB-API cursor that counts the rows fetched through it (rowcount is -1 on SQLite)."""

    def __init__(self, cursor: Any, counts: list[int]) -> None:
        self._cursor, self._counts = cursor, counts

    def fetchone(self) -> Any:
        row = self._cursor.fetchone()
        self._counts.append(row is not None)
        return row

    def fetchmany(self, *args: Any) -> Any:
        rows = self._cursor.fetchmany(*args)
        self._counts.append(len(rows))
        return rows

    def fetchall(self) -> Any:
        rows = self._cursor.fetchall()
        self._counts.append(len(rows))
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


def _values_read(url: str, monkeypatch: pytest.MonkeyPatch, read: Any) -> tuple[int, int]:
    """(rows the database returned, points unpacked from summaries) while ``read`` runs."""
    rows: list[int] = []
    unpacked: list[int] = []

    def count(_conn, _cursor, _statement, _params, context, _many) -> None:  # type: ignore[no-untyped-def]
        context.cursor = _CountingCursor(context.cursor, rows)

    def counting_unpack(steps: bytes, values: bytes) -> tuple[list[int], list[float]]:
        result = unpack(steps, values)
        unpacked.append(len(result[0]))
        return result

    unpack = summaries.unpack
    monkeypatch.setattr(summaries, "unpack", counting_unpack)
    engine = get_engine(url)
    event.listen(engine, "after_cursor_execute", count)
    try:
        read()
    finally:
        event.remove(engine, "after_cursor_execute", count)
        monkeypatch.setattr(summaries, "unpack", unpack)
    return sum(rows), sum(unpacked)


def test_a_100k_point_curve_reads_a_bounded_number_of_values(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /jobs/{id}'s curve read of a 100k-point curve returns about max_points values from
    the database, as for a 1k-point curve (a read that grows with the run fails here); every
    point stays stored for the full-resolution downloads."""
    n, max_points = 100_000, 1000
    _create(url, "short", 1000)
    with session_scope(url) as session:  # the worker's way
        repo.upsert_points(
            session,
            "short",
            [(k, s, 5.0 - s / 1000) for k in ("train_loss", "lr") for s in range(1, 1001)],
        )
    _create(url, "long", n)
    with session_scope(url) as session:  # in bulk (upsert_points takes minutes for 200k points)
        _bulk_insert(
            session,
            [
                ("long", k, s, 5.0 - s / n, step_level(s))
                for k in ("train_loss", "lr")
                for s in range(1, n + 1)
            ],
        )
        summaries.rebuild(session, "long")
    read: dict[str, tuple[int, int]] = {}
    for job_id in ("short", "long"):
        with session_scope(url) as session:
            read[job_id] = _values_read(
                url, monkeypatch, partial(curves, session, job_id, None, max_points)
            )
            thinned = curves(session, job_id, None, max_points)
        assert 0.75 * max_points <= len(thinned.train_loss.steps) <= max_points
    rows, unpacked = read["long"]
    assert rows <= 4 * len(CURVE_KINDS)  # a row or so per curve, not a point per row
    assert unpacked <= 2 * summaries.CAPACITY  # two curves, each a bounded summary
    assert rows + unpacked <= 2 * sum(read["short"])  # no more than at 1k points
    with session_scope(url) as session:
        stored = repo.get_points(session, "long", ["train_loss", "lr"])
    assert [len(stored[kind]) for kind in ("train_loss", "lr")] == [n, n]  # nothing lost
    assert stored["lr"][-1] == (n, 4.0)


def _bulk_insert(session: Session, rows: list[tuple[str, str, int, float, int]]) -> None:
    """Points written around upsert_points, in the session's transaction (COPY on PostgreSQL)."""
    columns = "job_id, kind, step, value, level, recorded_at"
    connection = session.connection().connection.driver_connection
    assert connection is not None
    cursor = connection.cursor()
    if session.get_bind().dialect.name == "postgresql":
        cursor.execute("SET LOCAL statement_timeout = 0")  # a loaded machine may take seconds
        with cursor.copy(f"COPY metric_points ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((*row, "2026-12-01"))
    else:
        cursor.executemany(
            f"INSERT INTO metric_points ({columns}) VALUES (?, ?, ?, ?, ?, '2026-12-01')", rows
        )


def _summary(url: str, job_id: str) -> dict[str, summaries.Summary]:
    with session_scope(url) as session:
        return summaries.load(session, job_id, ["train_loss", "val_loss"])


def test_summaries_follow_every_write(url: str) -> None:
    """Points upserted out of order, overwritten (the lowest one raised), deleted after a step:
    the summaries are what a rebuild from the stored points makes, and the thinned curve keeps
    the true first, last and lowest points."""
    rng = random.Random(7)
    _create(url, "j", 10_000)
    curve: dict[tuple[str, int], float] = {}
    steps = list(range(1, 6001))
    rng.shuffle(steps)
    for start in range(0, len(steps), 500):
        batch = [("train_loss", s, rng.uniform(1, 5)) for s in steps[start : start + 500]]
        batch += [("val_loss", s, rng.uniform(1, 5)) for s in steps[start : start + 500 : 50]]
        with session_scope(url) as session:
            repo.upsert_points(session, "j", batch)
        curve.update({(kind, s): v for kind, s, v in batch})
    lowest = min((v, s) for (kind, s), v in curve.items() if kind == "train_loss")
    overwrites = [("train_loss", lowest[1], 9.0), ("train_loss", 4096, -2.0), ("val_loss", 1, 0.5)]
    with session_scope(url) as session:
        repo.upsert_points(session, "j", overwrites)
        repo.upsert_points(session, "j", [("train_loss", 4096, 8.0)])  # the new lowest raised
    written = _summary(url, "j")
    with session_scope(url) as session:
        summaries.rebuild(session, "j")
    assert _summary(url, "j") == written
    assert (
        written["train_loss"].level > 0 and len(written["train_loss"].steps) <= summaries.CAPACITY
    )

    with session_scope(url) as session:
        full = repo.get_points(session, "j", ["train_loss"])["train_loss"]
        thinned = curves(session, "j", None, 200).train_loss
    true_lowest = min(full, key=lambda point: (point[1], point[0]))
    assert thinned.steps[0] == 1 and thinned.steps[-1] == 6000
    assert thinned.values[thinned.steps.index(true_lowest[0])] == true_lowest[1]

    with session_scope(url) as session:  # a resume from step 3000
        repo.delete_points_after(session, "j", 3000)
    after = _summary(url, "j")
    assert after["train_loss"].last[0] == 3000 and max(after["train_loss"].steps) <= 3000
    with session_scope(url) as session:
        summaries.rebuild(session, "j")
    assert _summary(url, "j") == after
    with session_scope(url) as session:
        repo.delete_points_after(session, "j", 0)
    assert _summary(url, "j") == {}


def test_migration_0008_summarises_the_curves_already_stored(tmp_path: Path) -> None:
    for database in (f"sqlite:///{tmp_path / 'old.db'}", None):
        with postgres_schema() if database is None else _same(database) as url:
            with get_engine(url).begin() as connection:
                config = alembic_config(url)
                config.attributes["connection"] = connection
                command.upgrade(config, "0007_covering_curve_index")
                connection.execute(
                    text(
                        "INSERT INTO jobs (id, phase, spec, out_dir, created_at, updated_at, "
                        "attempts, cancel_requested, iteration, max_iters, checkpoints) VALUES "
                        "('old', 'completed', '{}', '/tmp/old', CURRENT_TIMESTAMP, "
                        "CURRENT_TIMESTAMP, 1, false, 5000, 5000, '{}')"
                    )
                )
                connection.execute(
                    text(
                        "INSERT INTO metric_points (job_id, kind, step, value, level, recorded_at) "
                        "VALUES (:job_id, :kind, :step, :value, :level, CURRENT_TIMESTAMP)"
                    ),
                    [
                        {
                            "job_id": "old",
                            "kind": kind,
                            "step": s,
                            "value": 10.0 - s / 1000,
                            "level": step_level(s),
                        }
                        for kind in ("train_loss", "val_loss")
                        for s in range(1, 5001, 1 if kind == "train_loss" else 100)
                    ],
                )
            migrate(url)
            migrated = _summary(url, "old")
            assert migrated["train_loss"].level == 2 and len(migrated["train_loss"].steps) == 1250
            assert migrated["train_loss"].lowest == (5000, 5.0)
            assert migrated["val_loss"].level == 0 and len(migrated["val_loss"].steps) == 50
            with session_scope(url) as session:
                summaries.rebuild(session, "old")
            assert _summary(url, "old") == migrated
            with session_scope(url) as session:
                thinned = curves(session, "old", None, 200)
            assert len(thinned.train_loss.steps) == 200 and thinned.val_loss.steps[-1] == 4901
            get_engine(url).dispose()


class _same:
    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *_: object) -> None:
        return None
