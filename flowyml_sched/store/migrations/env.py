"""Alembic environment of the schedule store.

Run programmatically by :mod:`flowyml_sched.store.migrate`, which hands over an open
connection (already inside a transaction) in ``config.attributes["connection"]``. For
development, ``sqlalchemy.url`` in the config works too (for example to autogenerate a
new revision against a scratch database).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from flowyml_sched.store.schema import metadata

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("the schedule store's migrations run online only")
run_migrations_online()
