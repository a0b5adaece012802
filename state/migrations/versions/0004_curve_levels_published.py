"""Curves read at a cost independent of the run's length; jobs remember whether they were published.

``metric_points.level`` is the number of trailing zero bits of the step (step 0: the top level),
so the points at level >= L are the steps that are multiples of 2**L: a thinned curve reads a
bounded index range (``ix_metric_points_level``). ``ix_metric_points_value`` finds a curve's
minimum without a scan. ``jobs.published_at`` is set once the job's message is on the broker;
a queued job without it is published again by the workers' sweep.

Revision ID: 0004_curve_levels_published
Revises: 0003_wide_steps
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_curve_levels_published"
down_revision = "0003_wide_steps"
branch_labels = None
depends_on = None
TOP_LEVEL = 62  # step 0 (and the cap for huge steps)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("published_at", sa.DateTime(), nullable=True))
    op.execute(
        "UPDATE jobs SET published_at = created_at"
    )  # everything before this was published (or failed)
    with op.batch_alter_table("metric_points") as batch:
        batch.add_column(sa.Column("level", sa.SmallInteger(), nullable=False, server_default="0"))
    for level in range(
        1, 40
    ):  # each pass lifts the multiples of 2**level; steps stay far below 2**40
        op.execute(
            f"UPDATE metric_points SET level = {level} WHERE step % {2**level} = 0 AND step > 0"
        )
    op.execute(f"UPDATE metric_points SET level = {TOP_LEVEL} WHERE step = 0")
    op.create_index("ix_metric_points_level", "metric_points", ["job_id", "kind", "level", "step"])
    op.create_index("ix_metric_points_value", "metric_points", ["job_id", "kind", "value"])


def downgrade() -> None:
    op.drop_index("ix_metric_points_value", table_name="metric_points")
    op.drop_index("ix_metric_points_level", table_name="metric_points")
    with op.batch_alter_table("metric_points") as batch:
        batch.drop_column("level")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("published_at")
