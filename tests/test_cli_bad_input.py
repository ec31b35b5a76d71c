"""Inputs found by trying to break the tool: each is refused with a message, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowyml_sched.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["next", "--every", "10000000d", "--anchor", "2026-01-01T00:00:00Z"], "longer than 36500 days"),
        (["next", "--every", "PT1000000000000H"], "longer than 36500 days"),
        (["next", "--daily", "02:00", "--after", "0001-01-01T00:00:00+01:00"], "year is outside"),
        (["next", "--daily", "02:00", "--after", "9999-12-31T23:59:59Z"], "year is outside"),
        (["next", "--cron", "0 0 29 2 *", "--after", "8999-01-01T00:00:00Z", "-n", "1000"], "past the year 9999"),
        (["next", "--hourly", "5", "--every", "1h"], "exactly one of"),
    ],
)
def test_out_of_range_input_gets_a_message_not_a_traceback(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code in (1, 2)
    assert isinstance(result.exception, SystemExit)
    assert message in result.output


def test_a_deeply_nested_yaml_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("version: 1\nschedules:\n  - name: x\n    params: " + "[" * 2000 + "]" * 2000 + "\n")
    result = runner.invoke(app, ["validate", str(deep)])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "deep.yaml" in result.output


@pytest.mark.parametrize("content", ["db_path: [1, 2]\n", "db_path: 5\n", b"timezone: \xff\xfe\n"])
def test_a_config_file_with_wrong_types_or_bytes_is_named_in_the_message(tmp_path: Path, content: str | bytes) -> None:
    config = tmp_path / "config.yaml"
    if isinstance(content, bytes):
        config.write_bytes(content)
    else:
        config.write_text(content)
    result = runner.invoke(app, ["list", "--config", str(config)])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert str(config) in result.output


@pytest.mark.parametrize(
    ("content", "environ", "message"),
    [
        ("lock_backend: redis\n", {}, "none was given; expected a redis:// URL for lock_backend 'redis' (from config"),
        ("", {"FLOWYML_SCHEDULER_LOCK_BACKEND": "redis"}, "(from FLOWYML_SCHEDULER_LOCK_BACKEND): --redis-url"),
        ("lock_backend: zookeeper\n", {}, "'zookeeper' is not valid; expected 'file' or 'redis'"),
        ("lock_backend: redis\nredis_url: localhost:6379\n", {}, "config.yaml): 'localhost:6379' is not valid"),
        ("", {"FLOWYML_SCHEDULER_REDIS_URL": "redis://:pw@:6379"}, "'redis://:***@:6379' is not valid"),
    ],
)
def test_a_lock_setting_that_cannot_hold_is_refused_never_ignored(
    tmp_path: Path, content: str, environ: dict[str, str], message: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(content)
    result = runner.invoke(app, ["list", "--config", str(config), "--db", str(tmp_path / "s.db")], env=environ)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert message in result.output


def test_a_lock_backend_flag_the_worker_lacks_is_a_usage_error() -> None:
    result = runner.invoke(app, ["run-worker", "--lock-backend", "Redis"])
    assert result.exit_code == 2
    assert "'Redis' is not a lock backend; use 'file' or 'redis'" in result.output


def test_history_limit_past_the_bound_is_a_usage_error() -> None:
    result = runner.invoke(app, ["history", "x", "--limit", "99999999999999999999"])
    assert result.exit_code == 2


@pytest.mark.parametrize("option", ["--poll-interval", "--claim-ahead", "--grace", "--lease", "--keep-days"])
def test_nan_for_a_worker_duration_is_a_usage_error_naming_the_option(tmp_path: Path, option: str) -> None:
    # nan passes every range check: without its own check the worker would start with it
    result = runner.invoke(app, ["run-worker", "--once", "--db", str(tmp_path / "s.db"), option, "nan"])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert f"Invalid value for '{option}'" in result.output and "nan is not a number" in result.output
    assert not (tmp_path / "s.db").exists()
