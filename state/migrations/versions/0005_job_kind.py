"""Job kind: train (pretraining) or finetune (a task head on a checkpoint).

Revision ID: 0005_job_kind
Revises: 0004_curve_levels_published
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_job_kind"
down_revision = "0004_curve_levels_published"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="train"))
    op.create_index("ix_jobs_kind", "jobs", ["kind"])


def downgrade() -> None:
    op.drop_index("ix_jobs_kind", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("kind")
