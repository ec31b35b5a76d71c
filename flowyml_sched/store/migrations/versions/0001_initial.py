"""Initial schema: schedules, runs (history) and workers.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Time columns are ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL and DATETIME text (naive UTC,
written by ``schema.UTCDateTime``) on SQLite. ``runs.schedule_name`` has no foreign key:
history outlives its schedule.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _instant() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("pipeline", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("expression", sa.Text(), nullable=False),
        sa.Column("anchor", _instant(), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("pause_note", sa.Text(), nullable=True),
        sa.Column("catchup", sa.String(16), nullable=False),
        sa.Column("max_catchup", sa.Integer(), nullable=False),
        sa.Column("misfire_grace_seconds", sa.Double(), nullable=True),
        sa.Column("overlap", sa.String(16), nullable=False),
        sa.Column("timeout_seconds", sa.Double(), nullable=True),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("retry_backoff_seconds", sa.Double(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("updated_at", _instant(), nullable=False),
        sa.Column("next_fire_at", _instant(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_schedules"),
    )
    op.create_index("ix_schedules_next_fire_at", "schedules", ["next_fire_at"])

    op.create_table(
        "runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("schedule_name", sa.String(128), nullable=False),
        sa.Column("scheduled_for", _instant(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", _instant(), nullable=True),
        sa.Column("finished_at", _instant(), nullable=True),
        sa.Column("duration_seconds", sa.Double(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("log_path", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.UniqueConstraint("schedule_name", "scheduled_for", name="uq_runs_schedule_name_scheduled_for"),
    )
    op.create_index(
        "ix_runs_schedule_name_scheduled_for_desc",
        "runs",
        ["schedule_name", sa.column("scheduled_for").desc()],
    )

    op.create_table(
        "workers",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", _instant(), nullable=False),
        sa.Column("heartbeat_at", _instant(), nullable=False),
        sa.Column("lease_expires_at", _instant(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workers"),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_index("ix_runs_schedule_name_scheduled_for_desc", table_name="runs")
    op.drop_table("runs")
    op.drop_index("ix_schedules_next_fire_at", table_name="schedules")
    op.drop_table("schedules")
