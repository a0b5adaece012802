"""Curve summaries: a thinned curve is read from one bounded row, whatever the run's length.

``curve_summaries`` holds, per job and kind, the curve's first, last and lowest points and every
point at ``level`` or above (the multiples of 2**level), packed little-endian (int64 steps,
float64 values), at most 2048 of them (state/store/summaries.py keeps it in step with
``metric_points`` as points are written). The upgrade builds the summaries of the curves already
stored; ``metric_points`` is left as it was (every point stays there).

Revision ID: 0008_curve_summaries
Revises: 0007_covering_curve_index
Create Date: 2026-12-06
"""

from __future__ import annotations

import sys
from array import array

import sqlalchemy as sa
from alembic import op

revision = "0008_curve_summaries"
down_revision = "0007_covering_curve_index"
branch_labels = None
depends_on = None

CAPACITY = 2048  # state/store/summaries.CAPACITY when this was written

CURVE = "FROM metric_points WHERE job_id = :job_id AND kind = :kind"
SUMMARIES = sa.table(
    "curve_summaries",
    sa.column("job_id", sa.String),
    sa.column("kind", sa.String),
    sa.column("level", sa.SmallInteger),
    sa.column("first_step", sa.BigInteger),
    sa.column("first_value", sa.Float),
    sa.column("last_step", sa.BigInteger),
    sa.column("last_value", sa.Float),
    sa.column("lowest_step", sa.BigInteger),
    sa.column("lowest_value", sa.Float),
    sa.column("packed_steps", sa.LargeBinary),
    sa.column("packed_values", sa.LargeBinary),
)


def upgrade() -> None:
    op.create_table(
        "curve_summaries",
        sa.Column(
            "job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("level", sa.SmallInteger, nullable=False),
        sa.Column("first_step", sa.BigInteger, nullable=False),
        sa.Column("first_value", sa.Float, nullable=False),
        sa.Column("last_step", sa.BigInteger, nullable=False),
        sa.Column("last_value", sa.Float, nullable=False),
        sa.Column("lowest_step", sa.BigInteger, nullable=False),
        sa.Column("lowest_value", sa.Float, nullable=False),
        sa.Column("packed_steps", sa.LargeBinary, nullable=False),
        sa.Column("packed_values", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("job_id", "kind", name="pk_curve_summaries"),
    )
    bind = op.get_bind()
    counts: dict[tuple[str, str], dict[int, int]] = {}
    for job_id, kind, level, n in bind.execute(
        sa.text(
            "SELECT job_id, kind, level, COUNT(*) FROM metric_points GROUP BY job_id, kind, level"
        )
    ):
        counts.setdefault((job_id, kind), {})[int(level)] = int(n)
    for (job_id, kind), by_level in counts.items():
        level, held = 0, sum(by_level.values())
        while held > CAPACITY:  # the lowest level whose points fit
            held -= by_level.get(level, 0)
            level += 1
        binds = {"job_id": job_id, "kind": kind}
        rows = bind.execute(
            sa.text(f"SELECT step, value {CURVE} AND level >= :level ORDER BY step"),
            {**binds, "level": level},
        ).all()
        steps, values = (
            array("q", [int(s) for s, _ in rows]),
            array("d", [float(v) for _, v in rows]),
        )
        if sys.byteorder == "big":
            steps.byteswap()
            values.byteswap()
        first_step, first_value = _one(bind, binds, "step")
        last_step, last_value = _one(bind, binds, "step DESC")
        lowest_step, lowest_value = _one(bind, binds, "value, step")
        bind.execute(
            SUMMARIES.insert(),
            {
                **binds,
                "level": level,
                "first_step": first_step,
                "first_value": first_value,
                "last_step": last_step,
                "last_value": last_value,
                "lowest_step": lowest_step,
                "lowest_value": lowest_value,
                "packed_steps": steps.tobytes(),
                "packed_values": values.tobytes(),
            },
        )


def _one(bind: sa.Connection, binds: dict[str, str], order: str) -> tuple[int, float]:
    step, value = bind.execute(
        sa.text(f"SELECT step, value {CURVE} ORDER BY {order} LIMIT 1"), binds
    ).one()
    return int(step), float(value)


def downgrade() -> None:
    op.drop_table("curve_summaries")
