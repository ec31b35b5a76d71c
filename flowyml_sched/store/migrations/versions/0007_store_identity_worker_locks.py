"""The store's identity, and each worker's lock backend.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

``store_identity`` holds one row: a random id made when the store was, which names the store
wherever its URL is written differently (another host, another address): Redis keys are
namespaced by it (:mod:`flowyml_sched.locks.redis`). ``workers.lock_backend`` (``file`` or
``redis``; NULL for rows written before), ``workers.lock_problem`` (why the backend was
unusable at the last heartbeat) and ``workers.lock_target`` (which Redis server and database
the locks are in) let ``health`` say which locks each live worker uses, and when live workers'
locks cannot meet.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    identity = op.create_table("store_identity", sa.Column("id", sa.String(36), primary_key=True))
    op.bulk_insert(identity, [{"id": str(uuid.uuid4())}])
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("lock_backend", sa.String(16), nullable=True))
        batch.add_column(sa.Column("lock_problem", sa.Text(), nullable=True))
        batch.add_column(sa.Column("lock_target", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("lock_target")
        batch.drop_column("lock_problem")
        batch.drop_column("lock_backend")
    op.drop_table("store_identity")
