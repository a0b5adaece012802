"""Resources of distributed jobs (world size, executor, waiting reason, MFU, GPU memory) and workers.

Revision ID: 0002_gpu_resources
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_gpu_resources"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("resources", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("waiting_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("mfu", sa.Float(), nullable=True))
        batch.add_column(sa.Column("gpu_memory_peak_bytes", sa.BigInteger(), nullable=True))
    op.create_table(
        "workers",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("hostname", sa.String(128), nullable=False),
        sa.Column("device_kind", sa.String(8), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("free_devices", sa.Integer(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_workers_heartbeat_at", "workers", ["heartbeat_at"])


def downgrade() -> None:
    op.drop_index("ix_workers_heartbeat_at", table_name="workers")
    op.drop_table("workers")
    with op.batch_alter_table("jobs") as batch:
        for column in ("gpu_memory_peak_bytes", "mfu", "waiting_reason", "resources"):
            batch.drop_column(column)
