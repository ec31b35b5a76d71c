"""Settings resolved in one place: the lock backend and the Redis URL, from flags, either
spelling of the environment variables, the config file, and the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowyml_sched.config import SettingError, resolve_settings

URL = "redis://10.0.0.5:6379/0"


def _resolve(tmp_path: Path, environ: dict[str, str], config: str = "", **flags: str) -> tuple[str, str | None]:
    path = tmp_path / "config.yaml"
    path.write_text(config, encoding="utf-8")
    settings = resolve_settings({"HOME": str(tmp_path), **environ}, config_path=path, **flags)  # type: ignore[arg-type]
    return settings.lock_backend, settings.redis_url


def test_file_locks_are_the_default(tmp_path: Path) -> None:
    assert _resolve(tmp_path, {}) == ("file", None)


@pytest.mark.parametrize("prefix", ["FLOWYML_SCHEDULER_", "flowyml_SCHEDULER_"])
def test_the_environment_sets_redis_locks_in_either_spelling(tmp_path: Path, prefix: str) -> None:
    environ = {f"{prefix}LOCK_BACKEND": "redis", f"{prefix}REDIS_URL": URL}
    assert _resolve(tmp_path, environ) == ("redis", URL)


def test_flags_beat_the_environment_which_beats_the_config_file(tmp_path: Path) -> None:
    config = "lock_backend: redis\nredis_url: redis://config:6379/0\n"
    environ = {"FLOWYML_SCHEDULER_REDIS_URL": "redis://env:6379/0"}
    assert _resolve(tmp_path, {}, config) == ("redis", "redis://config:6379/0")
    assert _resolve(tmp_path, environ, config) == ("redis", "redis://env:6379/0")
    assert _resolve(tmp_path, environ, config, redis_url="redis://flag:6379/0") == ("redis", "redis://flag:6379/0")
    assert _resolve(tmp_path, environ, config, lock_backend="file") == ("file", "redis://env:6379/0")


@pytest.mark.parametrize(
    ("environ", "flags", "said"),
    [
        (
            {"FLOWYML_SCHEDULER_LOCK_BACKEND": "redis"},
            {},
            "redis_url: none was given; expected a redis:// URL for lock_backend 'redis' (from FLOWYML_",
        ),
        ({}, {"lock_backend": "redis"}, "for lock_backend 'redis' (from --lock-backend)"),
        ({}, {"lock_backend": "etcd"}, "lock_backend (from --lock-backend): 'etcd' is not valid"),
        ({}, {"lock_backend": ""}, "lock_backend (from --lock-backend): '' is not valid"),
        ({}, {"redis_url": ""}, "redis_url (from --redis-url): '' is not valid"),
        ({}, {"redis_url": "http://r:6379"}, "redis_url (from --redis-url): 'http://r:6379' is not valid"),
        ({}, {"redis_url": "redis://r:99999/0"}, "'redis://r:99999/0' is not valid"),
        ({"FLOWYML_SCHEDULER_REDIS_URL": "redis://u:hunter2@/0"}, {}, "'redis://u:***@/0' is not valid"),
        ({}, {"redis_url": "redis://[::1:6379/0"}, "redis_url (from --redis-url): 'redis://...' is not valid"),
        ({}, {"redis_url": "redis://r:6379/zero"}, "'redis://r:6379/zero' is not valid"),
        ({}, {"redis_url": "redis://:hun#ter2@r:6379/0"}, "is not valid"),  # '#' unencoded: %23
        ({}, {"redis_url": "redis://r/0?socket_timeout=soon"}, "Invalid value for 'socket_timeout'"),
        ({}, {"redis_url": "redis://r/0?socket_timeout=soon&password=hunter2"}, "password=%2A%2A%2A"),
    ],
)
def test_a_lock_setting_that_cannot_work_names_itself_and_its_source(
    tmp_path: Path, environ: dict[str, str], flags: dict[str, str], said: str
) -> None:
    with pytest.raises(SettingError) as raised:
        _resolve(tmp_path, environ, **flags)
    assert said in str(raised.value)
    assert "hunter2" not in str(raised.value)
