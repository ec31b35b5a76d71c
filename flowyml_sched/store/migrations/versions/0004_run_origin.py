"""Runs asked for: ``runs.origin`` and ``runs.params``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

``origin`` says who asked for the run: ``schedule`` (its trigger's fire time; every row
before this revision), ``manual`` (``flowyml-sched trigger``) or ``backfill``
(``flowyml-sched backfill``). ``params``: the parameters of that run only (``trigger
--param``), over the schedule's; NULL on every other row. A run asked for waits as a
``pending`` row, taken by any live worker as a pending retry is once its ``retry_at`` is due;
a backfill's fire times wait for their turn with ``retry_at`` NULL, in the partial index
``ix_runs_waiting_turn`` (the next one is found in one indexed read).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("origin", sa.String(16), nullable=False, server_default="schedule"))
        batch.add_column(sa.Column("params", sa.JSON(), nullable=True))
    where = sa.text("status = 'pending' AND retry_at IS NULL")
    op.create_index(
        "ix_runs_waiting_turn",
        "runs",
        ["schedule_name", "scheduled_for"],
        sqlite_where=where,
        postgresql_where=where,
    )


def downgrade() -> None:
    op.drop_index("ix_runs_waiting_turn", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("params")
        batch.drop_column("origin")
