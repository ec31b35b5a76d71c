"""Settings, resolved once, in one place: flags > environment > config file > defaults.

The command-line tool passes its flags and ``os.environ``; library code receives a
:class:`Settings` and never reads the environment itself.

Environment variables are ``FLOWYML_SCHEDULER_<NAME>``; the original scheduler's
documentation spells them ``flowyml_SCHEDULER_<NAME>``, which is accepted too (the
upper-case spelling wins when both are set).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowyml_sched.errors import SchedulerError
from flowyml_sched.zones import DEFAULT_TIMEZONE, get_zone

ENV_PREFIXES = ("FLOWYML_SCHEDULER_", "flowyml_SCHEDULER_")
"""Prefixes of the environment variables read, in order of precedence."""

APP_DIR = "flowyml-sched"
"""Directory name under the state and config base directories."""

DB_FILENAME = "scheduler.db"
"""SQLite file name inside the state directory."""

PYTHON_API_KEYS = ("persist", "distributed", "lock_backend", "redis_url", "check_interval", "max_concurrent")
"""Settings only the Python API reads (:class:`flowyml_sched.SchedulerConfig`), besides
``db_url``, ``db_path`` and ``timezone``: in a config file under these names, in the
environment as ``FLOWYML_SCHEDULER_<NAME>`` (the page's names)."""

CONFIG_KEYS = ("db_url", "db_path", "timezone", "state_dir", *PYTHON_API_KEYS)
"""Keys a config file may hold."""

LOCK_BACKENDS = ("file", "redis")
"""Names of the lock backends: ``file`` (processes on one host), ``redis`` (several hosts)."""

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")

# -- the worker's settings: the run-worker command's defaults --------------------------------

DEFAULT_CLAIM_AHEAD = 0.1
"""Seconds before their instant that fire times are claimed; their runs start at the instant."""
DEFAULT_POLL_INTERVAL = 1.0
"""Seconds between looks at the change watch and the sync file where they cannot wake the
loop (:mod:`flowyml_sched.store.watch`), and between retries after a failed round."""
DEFAULT_MAX_CONCURRENT = 4
"""Runs one worker executes at once."""
MAX_CONCURRENT_RANGE = (1, 1000)
"""The runs one worker may execute at once, least and most."""
POLL_INTERVAL_RANGE = (0.05, 3600.0)
"""A worker's poll interval in seconds, least and most."""
HISTORY_LIMIT_MAX = 100_000
"""The most runs one history read returns."""
DEFAULT_GRACE = 30.0
"""Seconds running work gets to finish after the first SIGTERM; keep below systemd's TimeoutStopSec."""
DEFAULT_LEASE = 30.0
"""Seconds a heartbeat keeps a worker's claims alive."""
HEARTBEATS_PER_LEASE = 3
"""Heartbeats within one lease: two may be missed before the worker's claims are abandoned."""
DEFAULT_HEARTBEAT_INTERVAL = DEFAULT_LEASE / HEARTBEATS_PER_LEASE
"""Seconds between heartbeats (and checks for other workers' expired leases): two may be missed."""
DEFAULT_KEEP_RUNS = 1000
"""History retention: runs kept per schedule."""
DEFAULT_MAX_LOG_BYTES = 10 * 1024 * 1024
"""A run's log file keeps at most this many bytes of output (10 MiB); the rest is counted and dropped."""


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker behaves; times in seconds. ``log_dir`` holds one log file per run (None:
    ``<state dir>/logs``, filled in by :func:`flowyml_sched.application.workers.open_worker`;
    a :class:`~flowyml_sched.worker.Worker` that runs child processes needs one)."""

    log_dir: Path | None = None
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    poll_interval: float = DEFAULT_POLL_INTERVAL
    claim_ahead: float = DEFAULT_CLAIM_AHEAD
    grace: float = DEFAULT_GRACE
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    lease: float = DEFAULT_LEASE
    in_process: bool = False
    warm_templates: bool = True
    """Fork each child run, prepared, from a warm template of its pipeline's module
    (:mod:`flowyml_sched.warm`); False: a fresh interpreter for each."""
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES
    keep_runs: int | None = DEFAULT_KEEP_RUNS
    keep_days: float | None = None
    sync_file: Path | None = None


class ConfigError(SchedulerError, ValueError):
    """A config file that cannot be read or holds something other than the known keys."""

    def __init__(self, path: Path, reason: str):
        self.path = path
        super().__init__(f"config file {path}: {reason}. Known keys: {', '.join(CONFIG_KEYS)}")


@dataclass(frozen=True)
class Settings:
    """Resolved settings: ``db_url`` is a SQLAlchemy URL; ``state_dir`` holds file locks and logs."""

    db_url: str
    timezone: str
    state_dir: Path
    db_source: str
    lock_backend: str = "file"
    """``file`` (the processes of one host, sharing ``state_dir``) or ``redis`` (several hosts)."""
    redis_url: str | None = None
    """The Redis server of the ``redis`` lock backend (``redis://``, ``rediss://`` or ``unix://``)."""


def env(environ: Mapping[str, str], name: str) -> str | None:
    """The value of setting ``name`` (``DB_URL``) from either spelling of its variable, or None."""
    for prefix in ENV_PREFIXES:
        value = environ.get(prefix + name)
        if value:
            return value
    return None


def state_dir(environ: Mapping[str, str]) -> Path:
    """Where state lives: ``$STATE_DIRECTORY`` (systemd's StateDirectory=, first entry),
    else ``$XDG_STATE_HOME/flowyml-sched``, else ``~/.local/state/flowyml-sched``."""
    systemd = environ.get("STATE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    xdg = environ.get("XDG_STATE_HOME")
    base = (
        Path(xdg) if xdg and Path(xdg).is_absolute() else Path(environ.get("HOME", "~")).expanduser() / ".local/state"
    )
    return base / APP_DIR


def default_config_path(environ: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/flowyml-sched/config.yaml``, default ``~/.config/flowyml-sched/config.yaml``."""
    xdg = environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path(environ.get("HOME", "~")).expanduser() / ".config"
    return base / APP_DIR / "config.yaml"


def read_config_file(path: Path, required: bool) -> dict[str, Any]:
    """Read a YAML config file with the safe loader; a missing optional file is empty.

    Raises :class:`ConfigError` for an unreadable or malformed file or an unknown key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(path, "it is not UTF-8 text") from None
    except FileNotFoundError:
        if required:
            raise ConfigError(path, "no such file") from None
        return {}
    except OSError as exc:
        raise ConfigError(path, exc.strerror or str(exc)) from None
    import yaml  # only when there is a file: keeps start-up light

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError(path, f"{line}not valid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "expected a mapping of keys to values")
    unknown = sorted(set(map(str, data)) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(path, f"unknown key {unknown[0]!r}")
    for key, value in data.items():
        if key in PYTHON_API_KEYS and isinstance(value, bool | int | float):  # persist: false, max_concurrent: 4
            data[key] = str(value).lower() if isinstance(value, bool) else str(value)
        elif not isinstance(value, str) or not value:
            raise ConfigError(path, f"{key} must be non-empty text, not {value!r}")
    return data


def _config(environ: Mapping[str, str], config_path: Path | None) -> tuple[Path, dict[str, Any]]:
    """The config file in force (``config_path``, ``$FLOWYML_SCHEDULER_CONFIG``, else the
    default path) and what it holds (nothing when the default file does not exist)."""
    explicit = config_path or (Path(env(environ, "CONFIG") or "") if env(environ, "CONFIG") else None)
    path = explicit or default_config_path(environ)
    return path, read_config_file(path, required=explicit is not None)


def resolve_settings(
    environ: Mapping[str, str],
    *,
    db_path: Path | None = None,
    db_url: str | None = None,
    timezone: str | None = None,
    config_path: Path | None = None,
    lock_backend: str | None = None,
    redis_url: str | None = None,
) -> Settings:
    """Resolve the settings from flags (the keyword arguments), ``environ``, a config file
    (``config_path``, ``$FLOWYML_SCHEDULER_CONFIG`` or the default path, if it exists) and
    the defaults.

    The state directory (locks, run logs): ``FLOWYML_SCHEDULER_STATE_DIR`` > config
    ``state_dir`` > :func:`state_dir`'s defaults (the worker's ``--state-dir`` beats all).
    The database: ``--db-url`` > ``--db`` > ``FLOWYML_SCHEDULER_DB_URL`` >
    ``FLOWYML_SCHEDULER_DB_PATH`` > config ``db_url`` > config ``db_path`` >
    ``<state dir>/scheduler.db``. Never the current directory by accident: a relative
    path is taken relative to the current directory only when given explicitly. The lock
    backend and the Redis URL: ``--lock-backend`` / ``--redis-url`` >
    ``FLOWYML_SCHEDULER_LOCK_BACKEND`` / ``_REDIS_URL`` > config ``lock_backend`` /
    ``redis_url`` > ``file``. Raises :class:`ConfigError`, :class:`SettingError` and
    :class:`~flowyml_sched.errors.UnknownTimezone`.
    """
    config_file, config = _config(environ, config_path)
    configured_state = env(environ, "STATE_DIR") or config.get("state_dir")
    state = Path(configured_state).expanduser() if configured_state else state_dir(environ)
    candidates: list[tuple[str, str | None, bool]] = [
        ("--db-url", db_url, True),
        ("--db", str(db_path) if db_path else None, False),
        ("FLOWYML_SCHEDULER_DB_URL", env(environ, "DB_URL"), True),
        ("FLOWYML_SCHEDULER_DB_PATH", env(environ, "DB_PATH"), False),
        ("config db_url", config.get("db_url"), True),
        ("config db_path", config.get("db_path"), False),
        ("default", str(state / DB_FILENAME), False),
    ]
    source, value, is_url = next((s, v, u) for s, v, u in candidates if v)
    url = value if is_url else sqlite_url(Path(value))
    zone = timezone or env(environ, "TIMEZONE") or config.get("timezone") or DEFAULT_TIMEZONE
    get_zone(zone)
    if lock_backend == "":  # an empty flag is a mistake, not "use the default"
        check_lock_backend(lock_backend, "--lock-backend")
    if redis_url == "":
        check_redis_url(redis_url, "--redis-url")
    backend, backend_source = _first(
        ("--lock-backend", lock_backend),
        ("FLOWYML_SCHEDULER_LOCK_BACKEND", env(environ, "LOCK_BACKEND")),
        (f"config file {config_file}", config.get("lock_backend")),
    )
    backend = backend or "file"
    check_lock_backend(backend, backend_source)
    redis, redis_source = _first(
        ("--redis-url", redis_url),
        ("FLOWYML_SCHEDULER_REDIS_URL", env(environ, "REDIS_URL")),
        (f"config file {config_file}", config.get("redis_url")),
    )
    if redis is not None:
        check_redis_url(redis, redis_source)
    if backend == "redis" and redis is None:
        raise SettingError(
            "redis_url",
            None,
            f"a redis:// URL for lock_backend 'redis' (from {backend_source}): "
            "--redis-url, FLOWYML_SCHEDULER_REDIS_URL or config redis_url",
        )
    return Settings(
        db_url=str(url), timezone=zone, state_dir=state, db_source=source, lock_backend=backend, redis_url=redis
    )


def _first(*candidates: tuple[str, str | None]) -> tuple[str | None, str]:
    """The first ``(source, value)`` of ``candidates`` with a value, as ``(value, source)``;
    ``(None, "default")`` when none has one."""
    return next(((value, source) for source, value in candidates if value), (None, "default"))


def check_lock_backend(backend: str, source: str | None = None) -> None:
    """Raise SettingError unless ``backend`` is a lock backend: ``file`` (the processes of one
    host) or ``redis`` (several hosts; needs a Redis URL)."""
    if backend not in LOCK_BACKENDS:
        raise SettingError("lock_backend", backend, " or ".join(map(repr, LOCK_BACKENDS)), source)


def check_redis_url(url: str, source: str | None = None) -> None:
    """Raise SettingError unless ``url`` is a Redis URL redis-py takes: ``redis://``,
    ``rediss://`` (with a host, a port from 1 to 65535 and a database number) or ``unix://``
    (a socket path), options as redis-py's ``from_url`` reads them. The message never shows
    the password."""
    from urllib.parse import urlsplit

    from flowyml_sched.locks.urls import redacted

    expected = "a URL such as redis://host:6379/0 (or rediss://, unix:///path/to/socket)"
    shown = redacted(url)
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        raise SettingError("redis_url", shown, expected, source) from None
    database = parts.path.lstrip("/")
    whole = (
        parts.scheme in ("redis", "rediss") and bool(parts.hostname) and (database == "" or database.isdigit())
    ) or (parts.scheme == "unix" and bool(parts.path))
    if not (whole and port_ok) or parts.fragment:  # a '#' in a password must be written %23
        raise SettingError("redis_url", shown, expected, source)
    try:
        from redis.connection import parse_url
    except ImportError:  # the multi extra is missing: said where the worker builds its locks
        return
    try:
        parse_url(url)
    except ValueError as exc:
        raise SettingError("redis_url", shown, f"{expected} ({exc})", source) from None


class SettingError(SchedulerError, ValueError):
    """A setting whose value is not valid: names the setting, where the value came from, the
    value, and what would be valid."""

    def __init__(self, setting: str, value: object, expected: str, source: str | None = None):
        self.setting = setting
        self.value = value
        where = f" (from {source})" if source else ""
        given = "none was given" if value is None else f"{value!r} is not valid"
        super().__init__(f"{setting}{where}: {given}; expected {expected}")


def python_api_settings(environ: Mapping[str, str], config_path: Path | None = None) -> dict[str, tuple[str, str]]:
    """The Python API's settings as given, each as ``(text, source)``: the environment
    (``FLOWYML_SCHEDULER_<NAME>``, either spelling, :func:`env`) beats a config file
    (``config_path``, ``$FLOWYML_SCHEDULER_CONFIG`` or the default path, if it exists), as
    :func:`resolve_settings` has it. Keys: :data:`PYTHON_API_KEYS` plus ``db_url``,
    ``db_path`` and ``timezone``; the environment spells ``check_interval`` and
    ``max_concurrent`` ``CHECK_INTERVAL`` and ``MAX_CONCURRENT``. Raises :class:`ConfigError`."""
    config_file, config = _config(environ, config_path)
    found: dict[str, tuple[str, str]] = {}
    for key in ("db_url", "db_path", "timezone", *PYTHON_API_KEYS):
        from_env = env(environ, key.upper())
        if from_env is not None:
            found[key] = (from_env, f"FLOWYML_SCHEDULER_{key.upper()}")
        elif key in config:
            found[key] = (config[key], f"config file {config_file}")
    return found


def parse_flag(setting: str, text: str, source: str | None = None) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``, any case). Raises SettingError."""
    word = text.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise SettingError(setting, text, "true or false", source)


def parse_number(setting: str, text: str, source: str | None = None, *, whole: bool = False) -> float:
    """A positive number (``whole``: a whole number of at least 1). Raises SettingError."""
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = 0
    if not (value >= 1 if whole else 0 < value < float("inf")):
        raise SettingError(setting, text, "a whole number of at least 1" if whole else "a positive number", source)
    return value


def sqlite_url(path: Path) -> str:
    """SQLAlchemy URL of a SQLite file (made absolute)."""
    return f"sqlite:///{path.expanduser().absolute()}"
