"""PostgreSQL: notify listeners whenever the schedules table changes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

A statement-level trigger on ``schedules`` sends ``NOTIFY flowyml_sched_schedules`` with the
table's schema as payload (delivered when the writing transaction commits), whoever writes:
the CLI, a worker's claim, or SQL typed by hand. Idle workers ``LISTEN`` on it
(:mod:`flowyml_sched.store.watch`) instead of asking the database every poll. Nothing on
SQLite, where workers read ``PRAGMA data_version`` instead.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CHANNEL = "flowyml_sched_schedules"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION flowyml_sched_notify_schedules() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', TG_TABLE_SCHEMA);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER schedules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON schedules "
        "FOR EACH STATEMENT EXECUTE FUNCTION flowyml_sched_notify_schedules()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER schedules_changed ON schedules")
    op.execute("DROP FUNCTION flowyml_sched_notify_schedules()")
