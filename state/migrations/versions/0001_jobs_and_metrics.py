"""Jobs and metric points.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("out_dir", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("device", sa.String(32), nullable=True),
        sa.Column("codec", sa.JSON(), nullable=True),
        sa.Column("n_params", sa.Integer(), nullable=True),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("max_iters", sa.Integer(), nullable=False),
        sa.Column("tokens_per_s", sa.Float(), nullable=True),
        sa.Column("eta_seconds", sa.Float(), nullable=True),
        sa.Column("best_val_loss", sa.Float(), nullable=True),
        sa.Column("best_val_step", sa.Integer(), nullable=True),
        sa.Column("checkpoints", sa.JSON(), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
    )
    op.create_index("ix_jobs_phase", "jobs", ["phase"])
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.create_table(
        "metric_points",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("job_id", "kind", "step", name="uq_metric_job_kind_step"),
    )
    op.create_index("ix_metric_points_job_id", "metric_points", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_metric_points_job_id", table_name="metric_points")
    op.drop_table("metric_points")
    op.drop_index("ix_jobs_created_at", table_name="jobs")
    op.drop_index("ix_jobs_phase", table_name="jobs")
    op.drop_table("jobs")
