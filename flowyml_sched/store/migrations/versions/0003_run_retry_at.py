"""Durable retries: ``runs.retry_at``, when a pending retry of the row's fire time is due.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

A row whose attempt ended ``failed``, ``timed_out`` or ``abandoned`` with retries left keeps
that status and gets ``retry_at`` (aware UTC): the retry is stored with the outcome that
calls for it, in one transaction, and any live worker takes it once due (the worker that
scheduled it first, while it lives). NULL on every other row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_runs_retry_at", "runs", ["retry_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_retry_at", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("retry_at")
