"""64-bit steps (metric points, job progress) and the record of attempts whose worker died.

Revision ID: 0003_wide_steps
Revises: 0002_gpu_resources
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_wide_steps"
down_revision = "0002_gpu_resources"
branch_labels = None
depends_on = None

WIDENED = {
    "metric_points": ("step",),
    "jobs": ("iteration", "max_iters", "best_val_step", "n_params"),
}


def _widens() -> bool:
    # SQLite's INTEGER is already 64-bit; changing the type there would recreate the tables,
    # and dropping ``jobs`` with foreign keys on would cascade into every metric point.
    return op.get_context().dialect.name != "sqlite"


def upgrade() -> None:
    for table, columns in WIDENED.items() if _widens() else ():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column, type_=sa.BigInteger(), existing_type=sa.Integer())
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("interruptions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("interruptions")
    for table, columns in WIDENED.items() if _widens() else ():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column, type_=sa.Integer(), existing_type=sa.BigInteger())
