"""Users with hashed tokens and scopes, job owners, and the audit log of mutating actions.

Revision ID: 0006_users_and_audit
Revises: 0005_job_kind
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_users_and_audit"
down_revision = "0005_job_kind"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("revoked_at", sa.DateTime, nullable=True),
        sa.Column("max_active_jobs", sa.Integer, nullable=True),
        sa.Column("disk_quota_gb", sa.Float, nullable=True),
        sa.Column("device_hours_quota", sa.Float, nullable=True),
    )
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", sa.DateTime, nullable=False, index=True),
        sa.Column("user", sa.String(64), nullable=True, index=True),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("target", sa.String(64), nullable=True),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("submitted_by", sa.String(64), nullable=True))
    op.create_index("ix_jobs_submitted_by", "jobs", ["submitted_by"])


def downgrade() -> None:
    op.drop_index("ix_jobs_submitted_by", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("submitted_by")
    op.drop_table("audit_log")
    op.drop_table("users")
