"""Thinned curves read in time independent of the run's length.

A curve of N points is read through ``ix_metric_points_level`` (job, kind, level, step): the
points at level >= L are the steps that are multiples of 2**L, so choosing L from the step span
bounds what is read by about ``2 * max_points`` rows whatever N is. The first, last and lowest
points (index lookups) are always kept; the rest is thinned evenly to ``max_points`` in all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Select, func, literal, select, union_all
from sqlalchemy.orm import Session

from state.store.models import MetricPoint

Point = tuple[int, float]


@dataclass(frozen=True)
class ThinCurve:
    points: list[Point]
    thinned: bool  # some points of the range are not in ``points``


def read_curve(
    session: Session, job_id: str, kind: str, since: int | None, max_points: int
) -> ThinCurve:
    """At most ``max_points`` points of one curve (steps after ``since``), first/last/min kept."""
    summary = _summary(session, job_id, kind, since, max_points + 1)
    if summary is None:
        return ThinCurve([], False)
    count, first, last, lowest = summary
    if count <= max_points:
        return ThinCurve(_at_or_above(session, job_id, kind, since, 0, max_points), False)
    # one level below the sparsest that fits: about 2 * max_points rows, thinned evenly here
    level = max(0, _sparse_level(last[0] - first[0], max_points) - 1)
    rows = _at_or_above(session, job_id, kind, since, level, 2 * max_points)
    for _ in range(3):  # steps logged every k (odd k) are sparser at each level: go down
        if level == 0 or len(rows) >= max_points:
            break
        lower = max(0, level - max(1, int(math.log2(max_points / max(1, len(rows))))))
        denser = _at_or_above(session, job_id, kind, since, lower, 2 * max_points)
        if (
            len(denser) >= 2 * max_points
        ):  # would be cut at the limit: keep the even spacing we have
            break
        level, rows = lower, denser
    keep = {first, last, lowest}
    return ThinCurve(thin(sorted({*rows, *keep}), max_points, keep), True)


def _summary(
    session: Session, job_id: str, kind: str, since: int | None, count_limit: int
) -> tuple[int, Point, Point, Point] | None:
    """Points in the range (counted up to ``count_limit``), first, last and lowest: one round
    trip of four bounded index reads."""
    by_step = _range(job_id, kind, since).order_by(MetricPoint.step)
    counted = (
        select(func.count()).select_from(by_step.limit(count_limit).subquery()).scalar_subquery()
    )
    parts = [
        select(literal(0).label("part"), counted.label("step"), literal(0.0).label("value")),
        _tagged(1, by_step),
        _tagged(2, _range(job_id, kind, since).order_by(MetricPoint.step.desc())),
        _tagged(3, _range(job_id, kind, since).order_by(MetricPoint.value, MetricPoint.step)),
    ]
    rows = {
        int(part): (int(step), float(value))
        for part, step, value in session.execute(union_all(*parts))
    }
    if 1 not in rows:
        return None
    return rows[0][0], rows[1], rows[2], rows[3]


def _tagged(part: int, query: Select[int, float]) -> Select[int, int, float]:
    inner = query.limit(1).subquery()
    return select(literal(part).label("part"), inner.c.step, inner.c.value)


def thin(points: list[Point], max_points: int, keep: set[Point]) -> list[Point]:
    """Evenly spaced points of a sorted curve (its ends included), ``max_points`` in all, where
    each point of ``keep`` replaces the spaced point nearest to it."""
    if len(points) <= max_points:
        return points
    last = len(points) - 1
    chosen = sorted({round(i * last / (max_points - 1)) for i in range(max_points)})
    index = {point: i for i, point in enumerate(points)}
    for point in sorted(keep, key=index.__getitem__):
        i = index[point]
        if i in chosen:
            continue
        spare = [j for j in chosen if points[j] not in keep]
        chosen.remove(min(spare, key=lambda j: abs(j - i)))
        chosen.append(i)
    return [points[i] for i in sorted(chosen)]


def _sparse_level(span: int, max_points: int) -> int:
    """Smallest L with at most ``max_points`` multiples of 2**L in a span of steps."""
    if span <= max_points:
        return 0
    return max(0, math.ceil(math.log2(span / max_points)))


def _range(job_id: str, kind: str, since: int | None) -> Select[int, float]:
    query = select(MetricPoint.step, MetricPoint.value).where(
        MetricPoint.job_id == job_id, MetricPoint.kind == kind
    )
    return query if since is None else query.where(MetricPoint.step > since)


def _at_or_above(
    session: Session, job_id: str, kind: str, since: int | None, level: int, limit: int
) -> list[Point]:
    # no ORDER BY: the planner then reads ix_metric_points_level's bounded range rather than walk
    # the step index filtering on level; sorted here
    query = _range(job_id, kind, since).where(MetricPoint.level >= level)
    rows = session.execute(query.limit(limit)).all()
    return sorted((int(step), float(value)) for step, value in rows)
