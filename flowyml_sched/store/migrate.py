"""Schema versioning: a cheap check on every open, Alembic only when the schema is behind.

The normal path (:func:`stored_revisions`, from the store's open) runs one ``SELECT`` on
``alembic_version``, compared with :data:`HEAD_REVISION`; it never imports Alembic, so a command such as
``list`` starts fast. :func:`run_upgrade` imports Alembic, takes the store's write lock
(``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL) and
upgrades to head inside that one transaction, so concurrent first openers do the work
once and the others find it done.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from flowyml_sched.errors import StoreError
from flowyml_sched.store.schema import version_table

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)

HEAD_REVISION = "0007"
"""Newest migration shipped in ``migrations/versions``; a test checks that they agree."""

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

_PG_LOCK_KEY = 0x666C6F77796D6C  # "flowyml": serializes concurrent schema upgrades on one database


def stored_revisions(connection: sa.Connection) -> list[str] | None:
    """The revisions recorded in ``alembic_version``, or None when the table is missing or unreadable.

    After a failed query the connection's transaction is unusable on PostgreSQL: the caller
    ends it (leaving ``with engine.connect()`` rolls it back).
    """
    try:
        return list(connection.execute(sa.select(version_table.c.version_num)).scalars())
    except sa.exc.DBAPIError:
        return None


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic ``Config`` for the shipped migrations, without any ini file.

    With ``connection``, ``env.py`` runs the migrations on it (in its current transaction).
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def run_upgrade(write_engine: sa.Engine, location: str) -> list[str]:
    """Upgrade the schema to head in one transaction; return the revisions found before (may be empty).

    ``write_engine`` must begin transactions that hold the database's write lock on SQLite
    (``BEGIN IMMEDIATE``). Idempotent. Raises :class:`StoreError` when the database
    carries a revision this program does not know (written by a newer flowyml-sched);
    database errors propagate as ``sqlalchemy.exc`` errors for the caller to translate.
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with write_engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
        config = alembic_config(connection)
        script = ScriptDirectory.from_config(config)
        known = {revision.revision for revision in script.walk_revisions()}
        before = list(MigrationContext.configure(connection).get_current_heads())
        unknown = [revision for revision in before if revision not in known]
        if unknown:
            raise StoreError(
                location,
                f"its schema is at revision {', '.join(unknown)}, which this version of flowyml-sched "
                f"does not know (newest known: {HEAD_REVISION}); upgrade flowyml-sched",
            )
        if before != [HEAD_REVISION]:
            logger.info("upgrading the store schema at %s from %s to %s", location, before or "empty", HEAD_REVISION)
            command.upgrade(config, "head")
    return before
