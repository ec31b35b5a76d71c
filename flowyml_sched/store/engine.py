"""Engines for the schedule store, and translation of database errors into StoreError.

SQLite: the file is created (mode 0600, parent directories 0700) before SQLAlchemy opens
it; every connection runs in WAL mode with a busy timeout and foreign keys on. pysqlite's
own transaction handling is switched off (SQLAlchemy's documented recipe) so that the
store begins transactions itself: ``BEGIN`` for reads, ``BEGIN IMMEDIATE`` for writes
(see :data:`BEGIN_OPTION`). Taking the write lock up front means concurrent writers queue
on the busy timeout instead of failing with "database is locked" on a lock upgrade.

PostgreSQL: ``postgresql+psycopg://`` (``postgresql://`` is taken to mean the same).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

from flowyml_sched.errors import StoreError, StoreMissing

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_SECONDS = 30.0
"""How long a SQLite connection waits for another process's lock before giving up."""

CONNECT_TIMEOUT_SECONDS = 10
"""How long opening a PostgreSQL connection may take (unless the URL sets ``connect_timeout``)."""

BEGIN_OPTION = "flowyml_sched_begin"
"""Execution option naming the SQLite ``BEGIN`` mode of a connection's transactions (``IMMEDIATE`` for writes)."""


def _split_userinfo(url_text: str) -> tuple[str, str, str] | None:
    """``(scheme://, userinfo, @rest)`` of a URL with credentials, else None.

    The credentials run to the *last* ``@`` before the query, so that a password holding an
    unencoded ``@`` (or ``/``, ``:``) is taken whole; a URL whose part after ``://`` starts with
    ``/`` (``sqlite:////path``) has none.
    """
    scheme, sep, rest = url_text.partition("://")
    if not sep or rest.startswith("/"):
        return None
    at = rest.partition("?")[0].rfind("@")
    if at < 0:
        return None
    return scheme + sep, rest[:at], rest[at:]


def redact(url_text: str) -> str:
    """``url_text`` with its password replaced by ``***`` (works on text SQLAlchemy cannot parse).

    Everything after the user name's first ``:`` up to the last ``@`` is the password; when the
    user name itself holds an ``@``, the whole of the credentials is hidden.
    """
    parts = _split_userinfo(url_text)
    if parts is None:
        return url_text
    head, userinfo, tail = parts
    user, colon, _password = userinfo.partition(":")
    if "@" in user:
        return f"{head}***{tail}"
    return f"{head}{user}{':***' if colon else ''}{tail}"


def _unencoded_at(url_text: str) -> bool:
    """Whether the credentials of ``url_text`` hold an ``@`` that is not percent-encoded
    (SQLAlchemy would split them at the first one and take the rest of the password for the host)."""
    parts = _split_userinfo(url_text)
    return parts is not None and "@" in parts[1]


class StoreEngine:
    """The engines of one store and the place they point at.

    ``engine`` begins read transactions, ``write_engine`` (same pool) write transactions;
    ``location`` names the store in messages: the SQLite path, or the URL without its password.
    """

    def __init__(self, engine: sa.Engine, location: str, password: str | None, *, one_connection: bool = False):
        self.engine = engine
        self.one_connection = one_connection
        """An in-memory SQLite database: one connection that every thread shares, so that a
        read takes :attr:`write_mutex` too (two transactions cannot share a connection)."""
        self.write_engine = engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})
        self.write_mutex = threading.RLock()
        """Held around every write transaction: the threads of one process queue here and wake
        the moment the writer before them commits (on SQLite instead of polling the database
        lock through its busy handler, which sleeps 1, 2, 5, 10... ms between tries), and the
        store's group commit relies on it."""
        self.location = location
        self._password = password

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def error(self, exc: BaseException) -> StoreError:
        """A :class:`StoreError` naming this store and a short reason for ``exc`` (a database error)."""
        reason = _reason(exc, self.dialect)
        if self._password:
            reason = reason.replace(self._password, "***")
        return StoreError(self.location, reason)

    def dispose(self) -> None:
        self.engine.dispose()


def create_store_engine(url_text: str, create: bool = True) -> StoreEngine:
    """Parse ``url_text`` and build its engine; for SQLite, create the file and its directories
    (with ``create=False`` a missing SQLite file is an error instead).

    Nothing is queried yet. Raises :class:`StoreError` for an unparsable or unsupported URL,
    a missing driver, or a SQLite file that cannot be created (or is missing).
    """
    if _unencoded_at(url_text):
        raise StoreError(
            redact(url_text),
            "its user name or password holds an '@' that is not percent-encoded; write it as %40 "
            "(encode the password with urllib.parse.quote(password, safe=''))",
        )
    try:
        url = sa.make_url(url_text)
    except (sa.exc.ArgumentError, ValueError) as exc:
        detail = "" if _split_userinfo(url_text) else f" ({exc})"  # the error may quote a piece of the password
        raise StoreError(
            redact(url_text), f"it is not a database URL{detail}; use sqlite:///PATH or postgresql+psycopg://HOST/DB"
        ) from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, create)
    if backend == "postgresql":
        return _postgresql_engine(url)
    raise StoreError(
        url.render_as_string(hide_password=True),
        f"unsupported database {backend!r}; use sqlite:///PATH or postgresql+psycopg://HOST/DB",
    )


def _sqlite_engine(url: sa.URL, create: bool) -> StoreEngine:
    database = url.database or ""
    is_uri = str(url.query.get("uri", "")).lower() in ("true", "1")
    if database in ("", ":memory:"):
        location = "an in-memory SQLite database"
        engine = sa.create_engine(
            url,
            poolclass=sa.pool.StaticPool,
            connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_SECONDS},
        )
    else:
        if is_uri:
            location = database
        else:
            path = Path(database).expanduser().absolute()
            location = str(path)
            if not create and not path.exists():
                raise StoreMissing(
                    location,
                    "there is no store here yet (the first add, apply or db upgrade creates it)",
                )
            _create_sqlite_file(path)
            url = url.set(database=str(path))
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS})
    _install_sqlite_events(engine)
    return StoreEngine(engine, location, None, one_connection=database in ("", ":memory:"))


def _create_sqlite_file(path: Path) -> None:
    """Create ``path`` (mode 0600) and its missing parent directories (mode 0700) unless it exists."""
    try:
        missing = [directory for directory in (path.parent, *path.parent.parents) if not directory.exists()]
        for directory in reversed(missing):
            directory.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.is_dir():
            raise StoreError(str(path), "it is a directory, not a database file") from None
        return
    except OSError as exc:
        raise StoreError(str(path), f"cannot create the database file: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
    finally:
        os.close(fd)
    logger.debug("created the SQLite store file %s", path)


def _install_sqlite_events(engine: sa.Engine) -> None:
    busy_ms = int(BUSY_TIMEOUT_SECONDS * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Stop pysqlite from issuing BEGIN (and COMMIT before DDL) itself: _on_begin does it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"unknown SQLite BEGIN mode {mode!r}")
        connection.exec_driver_sql(f"BEGIN {mode}")


def _postgresql_engine(url: sa.URL) -> StoreEngine:
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    shown_query = {key: value for key, value in url.query.items() if key.lower() != "password"}
    location = sa.URL.create(
        url.drivername, url.username, None, url.host, url.port, url.database, shown_query
    ).render_as_string(hide_password=False)
    if url.drivername != "postgresql+psycopg":
        raise StoreError(location, f"unsupported driver {url.drivername!r}; use postgresql+psycopg://HOST/DB")
    connect_args: dict[str, object] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    if "application_name" not in url.query:
        connect_args["application_name"] = "flowyml-sched"
    try:
        engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except ImportError:
        raise StoreError(
            location, "the PostgreSQL driver psycopg is not installed; install flowyml-sched[multi]"
        ) from None
    return StoreEngine(engine, location, url.password)


_SQLITE_REASONS = {
    "file is not a database": "the file is not an SQLite database (corrupt, or some other kind of file)",
    "database disk image is malformed": "the database file is corrupt (malformed disk image)",
    "unable to open database file": "cannot open the file: check that it and its directory exist and are writable",
    "attempt to write a readonly database": "the file (or its directory) is read-only",
    "readonly database": "the file (or its directory) is read-only",
    "database is locked": f"the database is busy: another process holds its lock (waited up to {BUSY_TIMEOUT_SECONDS:g} s)",
    "disk i/o error": "disk I/O error while reading or writing the file",
    "database or disk is full": "the disk is full",
}


def _reason(exc: BaseException, dialect: str) -> str:
    """A one-line reason for a database error, without SQL text or traceback."""
    orig = getattr(exc, "orig", None) or exc
    if dialect == "sqlite":
        lowered = " ".join(str(orig).split()).lower()
        for needle, reason in _SQLITE_REASONS.items():
            if needle in lowered:
                return reason
        return f"SQLite error: {_first_line(str(orig))}"
    if isinstance(exc, sa.exc.DBAPIError) and exc.statement is None:
        return f"cannot connect to the server: {_first_line(str(orig))}"
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return f"lost the connection to the server: {_first_line(str(orig))}"
    return f"{type(orig).__name__}: {_first_line(str(orig))}"


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return "unknown error"
