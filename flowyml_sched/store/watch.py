"""Change watches: tell an idle worker, cheaply, whether the schedules may have changed.

An idle worker needs the earliest due fire time (one indexed read), but that only changes
when a schedule is written. A watch answers "changed since I last asked?" without a query:

- SQLite: ``PRAGMA data_version`` on a connection of the watch's own, which changes when any
  *other* connection (another process, or this store's pool) commits to the database
  (https://sqlite.org/pragma.html#pragma_data_version). It covers every table, so the
  answer is "may have changed". An in-memory database has one shared connection, where the
  pragma cannot see the writes: its watch always says changed.
- PostgreSQL: ``LISTEN flowyml_sched_schedules`` on a connection of the watch's own; migration
  0002's trigger notifies that channel, with the table's schema as payload, at the commit of
  every statement that writes ``schedules``. The check is a non-blocking look at the socket.

A watch also gives a descriptor to sleep on, readable when a change may have come
(:meth:`ChangeWatch.fileno`): on SQLite an inotify watch on the database's files
(:mod:`flowyml_sched.filewatch`), on PostgreSQL the listening connection's socket. The
sleeper then calls :meth:`ChangeWatch.changed`, which consumes what made it readable. Where
there is none (in-memory SQLite, no inotify, a URI-named database, no connection), the caller
polls.

The first call, and every call after the watch's connection failed (it is opened again on
the next call), says changed, so the caller reads again: a watch can cause an extra read,
never a missed change, provided the caller asks the watch *before* it reads.
"""

from __future__ import annotations

import contextlib
import logging
import select
import sqlite3
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from flowyml_sched.filewatch import FileWatch

logger = logging.getLogger(__name__)

CHANNEL = "flowyml_sched_schedules"
"""The PostgreSQL notification channel of migration 0002's trigger; the payload is the schema."""


class ChangeWatch(Protocol):
    def changed(self) -> bool:
        """True when the schedules may have changed since the previous call (always on the first)."""

    def fileno(self) -> int | None:
        """A descriptor that turns readable when :meth:`changed` may say True, and stays so until
        it is called; None when the watch cannot wake a sleeper (poll :meth:`changed` instead)."""

    def recheck(self) -> float | None:
        """Seconds after which :meth:`changed` must be asked again although the descriptor
        stayed quiet (a write was seen whose commit could not be waited for); None: no need."""

    def close(self) -> None:
        """Release the watch's connection; calling :meth:`changed` afterwards opens it again."""


class AlwaysChanged:
    """The watch of a store whose writes cannot be observed (in-memory SQLite): always changed."""

    def changed(self) -> bool:
        return True

    def fileno(self) -> None:
        return None

    def recheck(self) -> None:
        return None

    def close(self) -> None:
        pass


LOCK_WAIT_SECONDS = 0.2
"""How long the SQLite watch waits for another writer's lock before it answers "may have
changed" and asks to be asked again soon (:meth:`ChangeWatch.recheck`) until the lock is free:
a long transaction elsewhere must not hold the worker's loop (and its signals) for the busy timeout."""


class SQLiteDataVersionWatch:
    """``PRAGMA data_version`` on a dedicated connection, outside any transaction; with the
    database's ``path``, an inotify watch on its file, ``-wal`` and ``-journal`` to sleep on."""

    def __init__(self, engine: sa.Engine, path: Path | None):
        self._engine = engine
        self._raw: Any = None
        self._version: int | None = None
        self._unsettled = False
        """A write was seen whose writer still held the lock at the last look: look again."""
        self._paths = [path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-journal")] if path else []
        self._files: FileWatch | None = None

    def changed(self) -> bool:
        written = self._drain_files() or self._unsettled  # before the read: a later commit wakes again
        try:
            if self._raw is None:
                self._raw = self._engine.raw_connection()  # autocommit: the store's connect hook
                self._raw.driver_connection.execute(f"PRAGMA busy_timeout = {LOCK_WAIT_SECONDS * 1000:.0f}")
            sqlite = self._raw.driver_connection
            if written:
                # a commit writes its WAL frames (the events) before it shows (a write to the
                # mmap'd -shm, which inotify does not see): wait for the writer's lock, then look
                # (even if the version moved: an earlier commit may have moved it)
                try:
                    sqlite.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                        raise
                    self._unsettled = True  # a long transaction: look again soon, until it ends
                    return True
                sqlite.execute("ROLLBACK")
                self._unsettled = False
            version = sqlite.execute("PRAGMA data_version").fetchone()[0]
        except Exception as exc:  # any failure: say changed; the caller's read reports the error
            logger.debug("the SQLite change watch failed: %s", exc)
            self.close()
            return True
        changed = version != self._version
        self._version = version
        return changed

    def _drain_files(self) -> bool:
        """Read the inotify events (starting the watch on the first call); True when there may
        have been a write to the database's files."""
        if self._files is None:
            if not self._paths:
                return False
            self._files = FileWatch(self._paths)
            return True  # a commit in flight may have written before the watch began
        written = self._files.drain()
        if written and self._files.fileno() is None:
            self._files = None  # the inotify watch was lost (events dropped): watch anew next time
        return written

    def fileno(self) -> int | None:
        return self._files.fileno() if self._files is not None else None

    def recheck(self) -> float | None:
        return LOCK_WAIT_SECONDS if self._unsettled else None

    def close(self) -> None:
        raw, self._raw, self._version, self._unsettled = self._raw, None, None, False
        files, self._files = self._files, None
        if files is not None:
            files.close()
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.invalidate()


class PostgresListenWatch:
    """``LISTEN`` on a dedicated autocommit connection; a notification for this schema means changed."""

    def __init__(self, engine: sa.Engine):
        self._engine = engine
        self._raw: Any = None
        self._schema: str | None = None

    def changed(self) -> bool:
        if self._raw is None:
            self._listen()
            return True
        try:
            pg = self._raw.driver_connection
            readable, _, _ = select.select([pg.fileno()], [], [], 0)
            if not readable:
                return False
            return any(notify.payload == self._schema for notify in pg.notifies(timeout=0))
        except Exception as exc:  # a lost connection: listen anew, and say changed
            logger.debug("the PostgreSQL change watch lost its connection: %s", exc)
            self.close()
            self._listen()
            return True

    def fileno(self) -> int | None:
        if self._raw is None:
            return None
        try:
            return self._raw.driver_connection.fileno()
        except Exception:  # closed: the next call to changed() listens anew
            return None

    def recheck(self) -> None:
        return None  # a notification comes after its commit

    def _listen(self) -> None:
        """Open a connection and LISTEN on it; on failure stay closed (the next call tries again)."""
        raw = None
        try:
            raw = self._engine.raw_connection()
            pg = raw.driver_connection
            pg.rollback()
            pg.autocommit = True
            self._schema = pg.execute("SELECT current_schema()").fetchone()[0]
            pg.execute(f"LISTEN {CHANNEL}")
        except Exception as exc:
            logger.debug("the PostgreSQL change watch cannot listen: %s", exc)
            if raw is not None:
                with contextlib.suppress(Exception):
                    raw.invalidate()
            return
        self._raw = raw

    def close(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.invalidate()  # never back to the pool: it is autocommit and listening


def watch_for(engine: sa.Engine) -> ChangeWatch:
    """The right :class:`ChangeWatch` for ``engine``'s database."""
    if engine.dialect.name == "postgresql":
        return PostgresListenWatch(engine)
    if isinstance(engine.pool, sa.pool.StaticPool):
        return AlwaysChanged()
    uri = str(engine.url.query.get("uri", "")).lower() in ("true", "1")
    return SQLiteDataVersionWatch(engine, None if uri else Path(engine.url.database).resolve())
