"""Tables of the schedule store, as SQLAlchemy Core metadata.

This module describes the schema the code expects; the migrations in
``flowyml_sched/store/migrations/versions`` create it. A test compares the two.

Every time column is a :class:`UTCDateTime`: ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL,
a fixed-width UTC text on SQLite (so text order is time order). Either way, values go
in as aware datetimes (naive ones are refused with ``ValueError``) and come out as aware
UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

UTC = timezone.utc

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.types.TypeDecorator):
    """An instant: aware datetimes in, aware UTC datetimes out.

    Binding a naive datetime raises ``ValueError`` (the store cannot know which instant it
    names). On SQLite the value is stored as naive UTC text; on PostgreSQL as
    ``timestamptz``, converted back to UTC on read whatever the session's ``TimeZone``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected an aware datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: the store keeps aware UTC instants only")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _big_id() -> sa.types.TypeEngine:
    # SQLite only auto-increments a column typed exactly INTEGER PRIMARY KEY.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("pipeline", sa.String(512), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("expression", sa.Text(), nullable=False),
    sa.Column("anchor", UTCDateTime(), nullable=True),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("params", sa.JSON(), nullable=False),
    # the exclude: mapping and on_excluded, NULL when nothing is excluded (migration 0005)
    sa.Column("exclusions", sa.JSON(), nullable=True),
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
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("next_fire_at", UTCDateTime(), nullable=True, index=True),
    sa.Column("version", sa.Integer(), nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", _big_id(), primary_key=True, autoincrement=True),
    # Deliberately no foreign key: removing a schedule keeps its history.
    sa.Column("schedule_name", sa.String(128), nullable=False),
    sa.Column("scheduled_for", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    # indexed (migration 0006): the metrics read the runs that ended since their last scrape
    sa.Column("finished_at", UTCDateTime(), nullable=True, index=True),
    sa.Column("duration_seconds", sa.Double(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("worker", sa.String(255), nullable=True),
    sa.Column("host", sa.String(255), nullable=True),
    sa.Column("pid", sa.Integer(), nullable=True),
    sa.Column("log_path", sa.Text(), nullable=True),
    # a pending retry: due then, taken by any live worker (migration 0003)
    sa.Column("retry_at", UTCDateTime(), nullable=True, index=True),
    # who asked for the run (schedule, manual, backfill) and its own parameters (migration 0004)
    sa.Column("origin", sa.String(16), nullable=False, server_default="schedule"),
    sa.Column("params", sa.JSON(), nullable=True),
    sa.UniqueConstraint("schedule_name", "scheduled_for"),
)
sa.Index("ix_runs_schedule_name_scheduled_for_desc", runs.c.schedule_name, runs.c.scheduled_for.desc())
WAITING_TURN_WHERE = "status = 'pending' AND retry_at IS NULL"
"""The rows of a backfill waiting for their turn (migration 0004's partial index)."""
sa.Index(
    "ix_runs_waiting_turn",
    runs.c.schedule_name,
    runs.c.scheduled_for,
    sqlite_where=sa.text(WAITING_TURN_WHERE),
    postgresql_where=sa.text(WAITING_TURN_WHERE),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
    sa.Column("lease_expires_at", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("lock_backend", sa.String(16), nullable=True),
    sa.Column("lock_problem", sa.Text(), nullable=True),
    sa.Column("lock_target", sa.Text(), nullable=True),
)

store_identity = sa.Table(
    "store_identity",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
)
"""One row: the store's random id (migration 0007), which namespaces its Redis keys."""

version_table = sa.Table(
    "alembic_version",
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), primary_key=True),
)
"""Alembic's bookkeeping table, read directly for the cheap schema check (not part of :data:`metadata`)."""
