"""Curve reads from the index alone: ``ix_metric_points_level`` carries ``value``.

A thinned curve reads the points of one (job, kind) at or above a level, in step order
(state/store/curves.py). Without ``value`` in the index each of those rows cost a visit to the
table (one heap page per point on PostgreSQL), so the read grew with how scattered a long run's
points are; with it the read is an index-only scan. PostgreSQL: ``INCLUDE (value)``; SQLite has
no INCLUDE, so ``value`` is the index's last key column (covering all the same).

Revision ID: 0007_covering_curve_index
Revises: 0006_users_and_audit
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0007_covering_curve_index"
down_revision = "0006_users_and_audit"
branch_labels = None
depends_on = None

KEY = ["job_id", "kind", "level", "step"]


def upgrade() -> None:
    op.drop_index("ix_metric_points_level", table_name="metric_points")
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_metric_points_level", "metric_points", KEY, postgresql_include=["value"]
        )
    else:
        op.create_index("ix_metric_points_level", "metric_points", [*KEY, "value"])


def downgrade() -> None:
    op.drop_index("ix_metric_points_level", table_name="metric_points")
    op.create_index("ix_metric_points_level", "metric_points", KEY)
