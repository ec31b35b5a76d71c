"""Shared fixtures. Store fixtures: a fresh store on SQLite (a file under tmp_path) and on
the PostgreSQL server of this machine (a schema of its own per test, dropped afterwards).

PostgreSQL: ``FLOWYML_TEST_PG_URL`` names the server (a SQLAlchemy URL), else
``postgresql+psycopg://postgres@127.0.0.1:5432/test`` then ``root@`` are tried. When none
answers, the PostgreSQL tests fail if the environment variable ``CI`` is set (CI starts the
server, so it must be there) and are skipped otherwise.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from flowyml_sched.cli.logs import HANDLER_NAME
from flowyml_sched.store import ScheduleStore, open_store

PG_CANDIDATE_URLS = (
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://root@127.0.0.1:5432/test",
)

STORE_BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(autouse=True)
def _no_log_handler_left_behind() -> Iterator[None]:
    """A command run in this process (CliRunner: ``run-worker``) installs the CLI's log handler
    on the root logger, bound to that run's captured stderr, which is closed once it returns:
    a later test's log line would then fail to write and print a logging error into that
    test's stderr. Each test leaves the root logger as it found it."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
    root.setLevel(level)


def _postgres_unavailable(reason: str) -> None:
    message = f"PostgreSQL is not reachable ({reason}); start it (see .ci/run) or set FLOWYML_TEST_PG_URL"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI is set, so this is a failure", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """A SQLAlchemy URL of a PostgreSQL database the tests may create schemas in."""
    explicit = os.environ.get("FLOWYML_TEST_PG_URL")
    candidates = (explicit,) if explicit else PG_CANDIDATE_URLS
    problems = []
    for candidate in candidates:
        engine = sa.create_engine(candidate, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as conn:
                conn.execute(sa.select(1))
            return candidate
        except Exception as exc:
            first = str(getattr(exc, "orig", exc)).strip().splitlines()
            problems.append(f"{sa.make_url(candidate).render_as_string()}: {first[0] if first else type(exc).__name__}")
        finally:
            engine.dispose()
    _postgres_unavailable("; ".join(problems))
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    """The URL of the machine's Redis server (``FLOWYML_TEST_REDIS_URL``, default
    ``redis://127.0.0.1:6379/0``); tests keep to keys of their own (a fresh namespace each).
    Skipped when it does not answer, a failure under CI."""
    import redis

    url = os.environ.get("FLOWYML_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        message = f"Redis is not reachable at {url} ({exc}); start it (see .ci/run) or set FLOWYML_TEST_REDIS_URL"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set, so this is a failure", pytrace=False)
        pytest.skip(message)
    finally:
        client.close()
    return url


@pytest.fixture
def postgresql_url(postgres_server_url: str) -> Iterator[str]:
    """URL of an empty PostgreSQL schema of this test's own (first on the search_path), dropped after."""
    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(postgres_server_url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    url = sa.make_url(postgres_server_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True, if_exists=True))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """URL of a SQLite file that does not exist yet, in a directory that does not exist yet."""
    return f"sqlite:///{tmp_path / 'state' / 'schedules.db'}"


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request: pytest.FixtureRequest) -> str:
    """URL of an empty store, once per backend (``sqlite``, ``postgresql``)."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def store(store_url: str) -> Iterator[ScheduleStore]:
    """A fresh, migrated store on each backend, closed after the test."""
    with open_store(store_url) as opened:
        yield opened
