"""Runs asked for: ``runs.origin`` and ``runs.params``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

``origin`` says who asked for the run: ``schedule`` (its trigger's fire time; every row
before this revision), ``manual`` (``flowyml-sched trigger``) or ``backfill``
(``flowyml-sched backfill``). ``params``: the parameters of that run only (``trigger
--param``), over the schedule's; NULL on every other row. A run asked for waits as a
``pending`` row with ``retry_at`` set, taken by any live worker as a pending retry is.
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


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("params")
        batch.drop_column("origin")
