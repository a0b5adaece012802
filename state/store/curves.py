"""Thinned curves read in time independent of the run's length.

The whole curve (no ``since``) is thinned from its summary (state/store/summaries.py): one row
per curve of at most ``summaries.CAPACITY`` points kept as the points are written, all of a job's
curves in one query. Otherwise (``since``, or a curve without a summary) a curve of N points is
read through ``ix_metric_points_level`` (job, kind, level, step): the points at level >= L are the
steps that are multiples of 2**L, so choosing L from the step span bounds what is read by about
``2 * max_points`` rows whatever N is. The first, last and lowest points (index lookups) are
always kept; the rest is thinned evenly to ``max_points`` in all.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import floordiv, itemgetter

from sqlalchemy import Select, func, literal, select, union_all
from sqlalchemy.orm import Session

from state.store import summaries
from state.store.models import MetricPoint

Point = tuple[int, float]


@dataclass(frozen=True)
class ThinCurve:
    steps: list[int]
    values: list[float]
    thinned: bool  # some points of the range are not here

    @classmethod
    def of(cls, points: list[Point], thinned: bool) -> ThinCurve:
        return cls([step for step, _ in points], [value for _, value in points], thinned)

    @property
    def points(self) -> list[Point]:
        return list(zip(self.steps, self.values, strict=True))


def read_curves(
    session: Session, job_id: str, kinds: Sequence[str], since: int | None, max_points: int
) -> dict[str, ThinCurve]:
    """At most ``max_points`` points of each curve (steps after ``since``), first/last/min kept:
    from the summaries when the whole curve is asked for, else from ``metric_points``."""
    held = summaries.load(session, job_id, kinds) if since is None else {}
    curves = {}
    for kind in kinds:
        summary = held.get(kind)
        curve = None if summary is None else _from_summary(summary, max_points)
        if curve is None:
            curve = read_curve(session, job_id, kind, since, max_points)
        curves[kind] = curve
    return curves


def _from_summary(summary: summaries.Summary, max_points: int) -> ThinCurve | None:
    """The curve thinned from its summary; None when the summary holds too few points for
    ``max_points`` (a max_points above CAPACITY / 2)."""
    if summary.level > 0 and len(summary.steps) < max_points:
        return None
    steps, values = summary.with_ends()
    if summary.level == 0 and len(steps) <= max_points:
        return ThinCurve(steps, values, False)  # the whole curve
    ends = {summary.first[0], summary.last[0], summary.lowest[0]}
    pick = itemgetter(*_spaced(len(steps), max_points, sorted(bisect_left(steps, s) for s in ends)))
    return ThinCurve(list(pick(steps)), list(pick(values)), True)


def read_curve(
    session: Session, job_id: str, kind: str, since: int | None, max_points: int
) -> ThinCurve:
    """At most ``max_points`` points of one curve (steps after ``since``), first/last/min kept."""
    summary = _summary(session, job_id, kind, since, max_points + 1)
    if summary is None:
        return ThinCurve([], [], False)
    count, first, last, lowest = summary
    if count <= max_points:
        return ThinCurve.of(_at_or_above(session, job_id, kind, since, 0, max_points), False)
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
    return ThinCurve.of(thin(sorted({*rows, *keep}), max_points, keep), True)


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
    each point of ``keep`` replaces the spaced point nearest to it (the earlier of two as near).
    Steps are unique."""
    if len(points) <= max_points:
        return points
    kept = sorted(bisect_left(points, (step,)) for step, _ in keep)
    return [points[i] for i in _spaced(len(points), max_points, kept)]


def _spaced(n: int, max_points: int, kept: list[int]) -> list[int]:
    """``max_points`` evenly spaced indexes of ``n > max_points`` (0 and n - 1 included), each
    of ``kept`` (sorted) replacing the nearest spaced one: O(max_points)."""
    last = n - 1
    # i * last / (max_points - 1) to the nearest (halves up) for each i: strictly increasing, as
    # consecutive values are more than 1 apart; in integers, and map keeps the loop in C
    double = 2 * (max_points - 1)
    chosen = list(
        map(floordiv, range(double // 2, max_points * 2 * last, 2 * last), repeat(double))
    )
    protected = set(kept)
    for i in kept:
        at = bisect_left(chosen, i)
        if at < len(chosen) and chosen[at] == i:
            continue
        left, right = at - 1, at
        while left >= 0 and chosen[left] in protected:
            left -= 1
        while right < len(chosen) and chosen[right] in protected:
            right += 1
        use_left = left >= 0 and (right == len(chosen) or i - chosen[left] <= chosen[right] - i)
        chosen.pop(left if use_left else right)
        insort(chosen, i)
    return chosen


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
