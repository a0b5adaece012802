"""Curve summaries: a bounded picture of every curve, kept in step with its points as they are
written, so that a thinned curve is read from one small row whatever the run's length.

A summary (one ``curve_summaries`` row per job and kind) holds the curve's first, last and lowest
points and every point at ``level`` or above: the steps that are multiples of 2**level
(``metric_points.level``), packed as int64 steps and float64 values. When more than ``CAPACITY``
points would be held, ``level`` rises by one and the points below it are dropped (about half),
so a row never holds more than ``CAPACITY`` points; at level 0 it holds the whole curve.

``metric_points`` keeps every point (the full-resolution downloads read it). The repository's
writes keep the summaries in step in the same transaction: :func:`record` after an upsert,
:func:`rebuild` after points are deleted (a resume). A curve without a summary row (its points
written around these functions) is read from ``metric_points`` as before (state/store/curves.py).
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from state.store.models import CurveSummary, MetricPoint, step_level

# Points a summary holds at most (32 KiB packed). Above level 0 it holds more than CAPACITY / 2,
# so it thins to any max_points up to CAPACITY / 2 (the service's default is 1000).
CAPACITY = 2048
Point = tuple[int, float]
TABLE = cast(Table, CurveSummary.__table__)
_BIG_ENDIAN = sys.byteorder == "big"


@dataclass
class Summary:
    level: int
    first: Point
    last: Point
    lowest: Point
    steps: list[int]  # the points at ``level`` or above, in step order
    values: list[float]
    repacked: bool = False  # steps/values changed since read (the row's packed columns rewritten)

    def with_ends(self) -> tuple[list[int], list[float]]:
        """The held points with the first, last and lowest merged in (in place), in step order."""
        for step, value in (self.first, self.last, self.lowest):
            i = bisect_left(self.steps, step)
            if i == len(self.steps) or self.steps[i] != step:
                self.steps.insert(i, step)
                self.values.insert(i, value)
        return self.steps, self.values


def pack(steps: Sequence[int], values: Sequence[float]) -> tuple[bytes, bytes]:
    """Little-endian int64 steps and float64 values."""
    packed = array("q", steps), array("d", values)
    if _BIG_ENDIAN:
        for part in packed:
            part.byteswap()
    return packed[0].tobytes(), packed[1].tobytes()


def unpack(steps: bytes, values: bytes) -> tuple[list[int], list[float]]:
    unpacked_steps, unpacked_values = array("q"), array("d")
    unpacked_steps.frombytes(steps)
    unpacked_values.frombytes(values)
    if _BIG_ENDIAN:
        unpacked_steps.byteswap()
        unpacked_values.byteswap()
    return unpacked_steps.tolist(), unpacked_values.tolist()


def load(
    session: Session, job_id: str, kinds: Iterable[str], for_update: bool = False
) -> dict[str, Summary]:
    """The summaries of these curves of a job (one query); a curve without one is absent."""
    query = select(TABLE).where(TABLE.c.job_id == job_id, TABLE.c.kind.in_(list(kinds)))
    if for_update:
        query = query.with_for_update()
    held = {}
    for row in session.execute(query).mappings():
        steps, values = unpack(row["packed_steps"], row["packed_values"])
        held[str(row["kind"])] = Summary(
            level=int(row["level"]),
            first=(int(row["first_step"]), float(row["first_value"])),
            last=(int(row["last_step"]), float(row["last_value"])),
            lowest=(int(row["lowest_step"]), float(row["lowest_value"])),
            steps=steps,
            values=values,
        )
    return held


def record(session: Session, job_id: str, points: Iterable[tuple[str, int, float]]) -> None:
    """Bring the summaries of a job's curves up to date with points just upserted into
    ``metric_points`` (same transaction; a repeated step replaces its value)."""
    by_kind: dict[str, list[Point]] = {}
    for kind, step, value in points:
        by_kind.setdefault(kind, []).append((int(step), float(value)))
    if not by_kind:
        return
    held = load(session, job_id, by_kind, for_update=True)
    changed, built = {}, {}
    for kind, new in by_kind.items():
        summary = held.get(kind)
        if summary is None:  # a new curve (or one older than the summaries): from its points
            built[kind] = _build(session, job_id, kind)
            continue
        if not _add(summary, new):
            summary.lowest = _lowest(session, job_id, kind)
        changed[kind] = summary
    rewritten = {kind: s for kind, s in changed.items() if s.repacked}
    _upsert(session, job_id, {**built, **rewritten})
    _update_ends(session, job_id, {k: s for k, s in changed.items() if not s.repacked})


def rebuild(session: Session, job_id: str, kinds: Iterable[str] | None = None) -> None:
    """Summaries of a job's curves made afresh from ``metric_points`` (after points were deleted,
    or written around :func:`record`, e.g. by a bulk COPY): reads the curve once."""
    held = TABLE.delete().where(TABLE.c.job_id == job_id)
    if kinds is None:
        session.execute(held)
        kinds = session.scalars(
            select(MetricPoint.kind).where(MetricPoint.job_id == job_id).distinct()
        ).all()
    else:
        kinds = list(kinds)
        session.execute(held.where(TABLE.c.kind.in_(kinds)))
    built = {kind: _build(session, job_id, kind) for kind in kinds}
    _upsert(session, job_id, {kind: summary for kind, summary in built.items() if summary})


def _add(summary: Summary, new: Iterable[Point]) -> bool:
    """Add or replace points; False when the lowest point's value rose (find it again)."""
    lowest_known = True
    for step, value in new:
        if step <= summary.first[0]:
            summary.first = (step, value)
        if step >= summary.last[0]:
            summary.last = (step, value)
        low_step, low_value = summary.lowest
        if value < low_value or (value == low_value and step < low_step):
            summary.lowest, lowest_known = (step, value), True
        elif step == low_step and value != low_value:
            lowest_known = False  # the lowest point was overwritten with a higher value
        if step_level(step) < summary.level:
            continue
        i = bisect_left(summary.steps, step)
        if i < len(summary.steps) and summary.steps[i] == step:
            summary.values[i] = value
        else:
            summary.steps.insert(i, step)
            summary.values.insert(i, value)
        summary.repacked = True
    _fit(summary)
    return lowest_known


def _fit(summary: Summary) -> None:
    """Raise the level until at most CAPACITY points are held."""
    while len(summary.steps) > CAPACITY:
        summary.level += 1
        kept = [i for i, step in enumerate(summary.steps) if step_level(step) >= summary.level]
        summary.steps = [summary.steps[i] for i in kept]
        summary.values = [summary.values[i] for i in kept]
        summary.repacked = True


def _build(session: Session, job_id: str, kind: str) -> Summary | None:
    curve = (MetricPoint.job_id == job_id, MetricPoint.kind == kind)
    counts = {
        int(level): int(n)
        for level, n in session.execute(
            select(MetricPoint.level, func.count()).where(*curve).group_by(MetricPoint.level)
        )
    }
    if not counts:
        return None
    level, held = 0, sum(counts.values())
    while held > CAPACITY:  # the lowest level whose points fit
        held -= counts.get(level, 0)
        level += 1
    rows = session.execute(
        select(MetricPoint.step, MetricPoint.value)
        .where(*curve, MetricPoint.level >= level)
        .order_by(MetricPoint.step)
    )
    steps, values = [], []
    for step, value in rows:
        steps.append(int(step))
        values.append(float(value))

    by_step = select(MetricPoint.step, MetricPoint.value).where(*curve).limit(1)
    first = session.execute(by_step.order_by(MetricPoint.step)).one()
    last = session.execute(by_step.order_by(MetricPoint.step.desc())).one()
    return Summary(
        level=level,
        first=(int(first[0]), float(first[1])),
        last=(int(last[0]), float(last[1])),
        lowest=_lowest(session, job_id, kind),
        steps=steps,
        values=values,
        repacked=True,
    )


def _lowest(session: Session, job_id: str, kind: str) -> Point:
    step, value = session.execute(
        select(MetricPoint.step, MetricPoint.value)
        .where(MetricPoint.job_id == job_id, MetricPoint.kind == kind)
        .order_by(MetricPoint.value, MetricPoint.step)
        .limit(1)
    ).one()
    return int(step), float(value)


def _ends(summary: Summary) -> dict[str, int | float]:
    return {
        "level": summary.level,
        "first_step": summary.first[0],
        "first_value": summary.first[1],
        "last_step": summary.last[0],
        "last_value": summary.last[1],
        "lowest_step": summary.lowest[0],
        "lowest_value": summary.lowest[1],
    }


def _upsert(session: Session, job_id: str, summaries: dict[str, Summary | None]) -> None:
    rows = []
    for kind, summary in summaries.items():
        if summary is None:
            continue
        steps, values = pack(summary.steps, summary.values)
        rows.append(
            {"job_id": job_id, "kind": kind, **_ends(summary)}
            | {"packed_steps": steps, "packed_values": values}
        )
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(TABLE).values(rows)
    columns = [key for key in rows[0] if key not in ("job_id", "kind")]
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["job_id", "kind"],
            set_={column: statement.excluded[column] for column in columns},
        )
    )


def _update_ends(session: Session, job_id: str, summaries: dict[str, Summary]) -> None:
    """The first, last and lowest points and the level only: the packed points stay as stored."""
    if not summaries:
        return
    statement = update(TABLE).where(
        TABLE.c.job_id == bindparam("b_job_id"), TABLE.c.kind == bindparam("b_kind")
    )
    session.connection().execute(
        statement,
        [
            {"b_job_id": job_id, "b_kind": kind, **_ends(summary)}
            for kind, summary in summaries.items()
        ],
    )
