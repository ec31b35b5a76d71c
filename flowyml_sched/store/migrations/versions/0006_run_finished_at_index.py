"""An index on ``runs.finished_at``, for the metrics' read of the runs that ended lately.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

``/metrics`` (:mod:`flowyml_sched.application.metrics`) counts run ends as they happen; each
scrape reads the rows whose ``finished_at`` is recent, which without this index is a scan of
the whole history.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_finished_at", "runs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_finished_at", table_name="runs")
