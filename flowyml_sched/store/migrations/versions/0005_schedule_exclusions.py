"""Calendar exclusions: ``schedules.exclusions``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

``exclusions`` holds a schedule's ``exclude:`` mapping (``holidays``, ``dates``, ``ranges``)
and its ``on_excluded`` rule as JSON (:func:`flowyml_sched.model.exclusions_to_json`); NULL
when the schedule excludes nothing, as every schedule before this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("schedules", sa.Column("exclusions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("exclusions")
