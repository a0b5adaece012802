"""Thinned curves: bounded, with the first, last and lowest points, read at a cost that does not
grow with the run (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event

from service.jobs.service import curves
from state.store import get_engine, migrate, session_scope
from state.store import repository as repo
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


def _job(url: str, job_id: str, n: int, every: int = 1) -> None:
    with session_scope(url) as session:
        repo.create_job(
            session, job_id, {**tiny_spec(max_iters=n * every), "out_dir": "/nowhere"}, "/nowhere"
        )
        steps = range(every, n * every + 1, every)
        # a noisy falling loss whose minimum sits at an odd step in the middle
        points = [("train_loss", s, 5.0 + math.sin(s) - s / (n * every)) for s in steps]
        for start in range(0, len(points), 2000):
            repo.upsert_points(session, job_id, points[start : start + 2000])
        repo.upsert_points(session, job_id, [("train_loss", 7 * every, -1.0)])


@pytest.mark.parametrize(("n", "every"), [(20_000, 1), (3_000, 7), (20, 3)])
def test_thinned_curve_is_bounded_and_keeps_first_last_and_min(
    url: str, n: int, every: int
) -> None:
    _job(url, "j", n, every)
    with session_scope(url) as session:
        full = curves(session, "j", None, 200)
    steps, values = full.train_loss.steps, full.train_loss.values
    assert len(steps) <= 200 and steps == sorted(set(steps))
    assert steps[0] == every and steps[-1] == n * every
    assert values[steps.index(7 * every)] == -1.0
    assert full.downsampled is (n > 200)
    if n > 200:
        assert len(steps) >= 150  # dense, not merely bounded (odd logging intervals too)
        gaps = [b - a for a, b in zip(steps, steps[1:], strict=False)]
        assert max(gaps) <= 4 * (n * every) / 200  # spread over the whole run
    else:
        assert steps == list(range(every, n * every + 1, every))


def test_since_reads_only_the_new_points(url: str) -> None:
    _job(url, "j", 20_000)
    with session_scope(url) as session:
        recent = curves(session, "j", 19_990, 200).train_loss.steps
    assert recent == list(range(19_991, 20_001))


def test_rows_read_do_not_grow_with_the_run(url: str) -> None:
    """The number of rows the database returns for a curve is the same at 2k and at 20k points."""
    _job(url, "small", 2_000)
    _job(url, "large", 20_000)
    fetched: list[int] = []

    def count(_conn, cursor, *_args) -> None:  # type: ignore[no-untyped-def]
        fetched.append(max(0, cursor.rowcount))

    engine = get_engine(url)
    rows = {}
    for job_id in ("small", "large"):
        fetched.clear()
        event.listen(engine, "after_cursor_execute", count)
        with session_scope(url) as session:
            curves(session, job_id, None, 500)
        event.remove(engine, "after_cursor_execute", count)
        rows[job_id] = len(fetched)
    assert rows["large"] <= rows["small"] + 12  # a few index lookups per curve, not a scan
