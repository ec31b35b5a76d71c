"""What each ``flowyml-sched`` command shows a user: exit codes, the lines on stdout and
stderr, the keys and values of ``--json``, on the store and (where a command takes
``--file``) on a YAML schedules file.

These are characterization tests: they pin what the CLI does today, so that a refactor of
its internals can be checked for "no behaviour change". Every test has a SQLite store of
its own under ``tmp_path`` and an environment without ``FLOWYML_SCHEDULER_*`` variables
(and no config file); output that depends on the clock is matched by its shape only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import Result
from typer.testing import CliRunner

from flowyml_sched.cli import app
from flowyml_sched.model import Run, RunStatus
from flowyml_sched.store import open_store

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
PIPELINE = "etl.jobs:run"
"""A reference that cannot be imported here: every use passes --no-check-pipeline."""
REAL_PIPELINE = "pipelines_for_tests:ok"
"""A reference that can be imported here (tests/ is on sys.path), for commands that check it."""
ERROR = "flowyml-sched: error: "
SCHEDULE_KEYS = [
    "name", "pipeline", "kind", "expression", "anchor", "timezone", "params", "exclusions", "description", "tags", "enabled",
    "pause_note", "catchup", "max_catchup", "misfire_grace_seconds", "overlap", "timeout_seconds", "retries",
    "retry_backoff_seconds", "source", "created_at", "updated_at", "next_fire_at", "version",
]  # fmt: skip
"""The keys of a schedule in ``add --json``, ``edit --json``, in this order."""
POLICY_KEYS = SCHEDULE_KEYS[SCHEDULE_KEYS.index("catchup") : SCHEDULE_KEYS.index("source")]
"""The policy's keys among them."""
ENTRY_KEYS = [*SCHEDULE_KEYS, "status", "error"]
"""The keys of ``show --json``; ``list --json`` adds ``last_run``."""
RUN_KEYS = [
    "schedule", "scheduled_for", "status", "attempt", "started_at", "finished_at", "duration_seconds", "error",
    "run_id", "worker", "host", "pid", "log_path", "retry_at", "origin", "params",
]  # fmt: skip
HEALTH_KEYS = [
    "status", "checked_at", "window_seconds", "workers", "lock_warnings", "late", "broken", "success_rate", "schedules", "last_failure",
]  # fmt: skip
ALL_OPTIONS = [
    "--param", "n=10", "--param", "s=hello", "--tag", "t1", "--tag", "t2", "--description", "hello there",
    "--catchup", "all", "--max-catchup", "7", "--misfire-grace", "2m", "--overlap", "queue", "--timeout", "30m",
    "--retries", "3", "--retry-backoff", "90s",
]  # fmt: skip
"""Every non-trigger option of add/edit, with values other than the defaults."""

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No scheduler settings from the environment or a config file; plain-text rendering."""
    for key in list(os.environ):
        if key.upper().startswith("FLOWYML_SCHEDULER_"):
            monkeypatch.delenv(key)
    for key in ("STATE_DIRECTORY", "COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """The SQLite file of this test's store (created by the first add, apply or db upgrade)."""
    return tmp_path / "s.db"


@pytest.fixture
def schedules_file(tmp_path: Path) -> Path:
    """A YAML schedules file that does not exist yet."""
    return tmp_path / "schedules.yaml"


# -- helpers ------------------------------------------------------------------------------------


def cli(*args: str | Path, answer: str | None = None) -> Result:
    return runner.invoke(app, [str(a) for a in args], input=answer)


def succeeds(*args: str | Path, answer: str | None = None) -> Result:
    result = cli(*args, answer=answer)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.exception is None
    return result


def refused(result: Result, exit_code: int, *words: str) -> None:
    """An error: the exit code, one message on stderr naming ``words``, nothing on stdout."""
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.startswith(ERROR)
    for word in words:
        assert word in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def add(db: Path, name: str, *options: str) -> dict[str, Any]:
    """Add a schedule (PIPELINE, not checked) to the store; its ``--json`` output."""
    result = succeeds("add", name, "--pipeline", PIPELINE, "--no-check-pipeline", *options, "--db", db, "--json")
    return json.loads(result.stdout)


def show(db: Path, name: str) -> dict[str, Any]:
    return json.loads(succeeds("show", name, "--db", db, "--json").stdout)


def listed(db: Path, *options: str) -> list[dict[str, Any]]:
    return json.loads(succeeds("list", "--db", db, "--json", *options).stdout)


def names(db: Path) -> list[str]:
    return [entry["name"] for entry in listed(db)]


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def without(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in keys}


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def record_runs(db: Path, *runs: Run) -> None:
    """History rows written straight to the store, as a worker would have recorded them."""
    with open_store(f"sqlite:///{db}", create=False) as store:
        for run in runs:
            store.record_run(run)


def next_fire(zone: str) -> str:
    """A regex of ``describe_next``: the next fire time in the schedule's zone, and how far off it is."""
    return rf"next \d{{4}}-\d\d-\d\d \d\d:\d\d {zone} \(in \d+[dhms](?: \d+[hm])?\)"


def now_to_the_second() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# -- add ----------------------------------------------------------------------------------------


def test_add_says_the_name_and_when_the_schedule_fires_next(db: Path) -> None:
    result = succeeds(
        "add", "nightly", "--pipeline", PIPELINE, "--no-check-pipeline", "--daily", "04:30", "--tz", "Europe/Berlin",
        "--db", db,
    )  # fmt: skip
    assert re.fullmatch(rf"added nightly: {next_fire('(CET|CEST)')}\n", result.stdout)
    assert result.stderr == ""


def test_add_json_prints_every_stored_field_with_the_defaults(db: Path) -> None:
    before = datetime.now(UTC)
    data = add(db, "a", "--cron", "*/5 * * * *")
    assert list(data) == SCHEDULE_KEYS
    assert without(data, "created_at", "updated_at", "next_fire_at") == {
        "name": "a",
        "pipeline": PIPELINE,
        "kind": "cron",
        "expression": "*/5 * * * *",
        "anchor": None,
        "timezone": "UTC",
        "params": {},
        "exclusions": None,
        "description": "",
        "tags": [],
        "enabled": True,
        "pause_note": None,
        "catchup": "latest",
        "max_catchup": 100,
        "misfire_grace_seconds": None,
        "overlap": "skip",
        "timeout_seconds": None,
        "retries": 0,
        "retry_backoff_seconds": 60.0,
        "source": "cli",
        "version": 1,
    }
    assert data["created_at"] == data["updated_at"]
    assert instant(data["created_at"]) >= before
    next_fire = instant(data["next_fire_at"])
    assert next_fire > before and next_fire.utcoffset() == timedelta(0)
    assert next_fire.minute % 5 == 0 and next_fire.second == 0


@pytest.mark.parametrize(
    ("trigger", "kind", "expression"),
    [
        (["--cron", "*/5 * * * *"], "cron", "*/5 * * * *"),
        (["--cron", "@daily"], "cron", "@daily"),
        (["--daily", "04:30"], "daily", "04:30"),
        (["--hourly", "15"], "hourly", "15"),
        (["--hourly", ":15"], "hourly", "15"),
        (["--every", "15m"], "interval", "15m"),
        (["--every", "PT90M"], "interval", "1h30m"),
    ],
)
def test_add_stores_each_trigger_kind_as_kind_and_expression(
    db: Path, trigger: list[str], kind: str, expression: str
) -> None:
    data = add(db, "s", *trigger)
    assert (data["kind"], data["expression"]) == (kind, expression)
    assert show(db, "s")["kind"] == kind


def test_add_daily_fires_next_at_that_wall_time_in_the_schedules_zone(db: Path) -> None:
    data = add(db, "s", "--daily", "04:30", "--tz", "Europe/Berlin")
    assert data["timezone"] == "Europe/Berlin"
    local = instant(data["next_fire_at"]).astimezone(BERLIN)
    assert (local.hour, local.minute, local.second) == (4, 30, 0)


def test_add_hourly_fires_next_at_that_minute(db: Path) -> None:
    next_fire = instant(add(db, "s", "--hourly", "15")["next_fire_at"])
    assert (next_fire.minute, next_fire.second) == (15, 0)
    assert timedelta(0) < next_fire - datetime.now(UTC) <= timedelta(hours=1)


def test_add_every_without_an_anchor_counts_from_now_to_the_second(db: Path) -> None:
    before = now_to_the_second()
    data = add(db, "s", "--every", "15m")
    after = now_to_the_second()
    anchor = instant(data["anchor"])
    assert before <= anchor <= after
    assert instant(data["next_fire_at"]) == anchor + timedelta(minutes=15)


def test_add_every_with_an_anchor_keeps_it_and_fires_on_its_grid(db: Path) -> None:
    data = add(db, "s", "--every", "1h", "--anchor", "2026-01-01T00:30:00Z")
    assert data["anchor"] == "2026-01-01T00:30:00+00:00"
    next_fire = instant(data["next_fire_at"])
    assert (next_fire.minute, next_fire.second) == (30, 0)


def test_add_zone_is_utc_without_tz_or_environment(db: Path) -> None:
    assert add(db, "s", "--daily", "04:30")["timezone"] == "UTC"


@pytest.mark.parametrize("variable", ["FLOWYML_SCHEDULER_TIMEZONE", "flowyml_SCHEDULER_TIMEZONE"])
def test_add_zone_defaults_to_the_timezone_environment_variable(
    db: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "Asia/Tokyo")
    assert add(db, "s", "--daily", "04:30")["timezone"] == "Asia/Tokyo"
    result = succeeds("add", "t", "--pipeline", PIPELINE, "--no-check-pipeline", "--daily", "04:30", "--db", db)
    assert re.fullmatch(rf"added t: {next_fire('JST')}\n", result.stdout)


def test_add_tz_wins_over_the_timezone_environment_variable(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWYML_SCHEDULER_TIMEZONE", "Asia/Tokyo")
    assert add(db, "s", "--daily", "04:30", "--tz", "Europe/Berlin")["timezone"] == "Europe/Berlin"


def test_add_param_values_are_json_when_they_parse_and_text_otherwise(db: Path) -> None:
    params = ["n=10", "f=1.5", "b=true", "z=null", "s=hello", "q=x y", 'j={"a": [1, 2]}', "e=", "k=a=b"]
    data = add(db, "s", "--daily", "04:30", *[arg for p in params for arg in ("--param", p)])
    assert data["params"] == {
        "n": 10,
        "f": 1.5,
        "b": True,
        "z": None,
        "s": "hello",
        "q": "x y",
        "j": {"a": [1, 2]},
        "e": "",
        "k": "a=b",
    }
    assert show(db, "s")["params"] == data["params"]


def test_add_tags_and_description_are_stored(db: Path) -> None:
    data = add(db, "s", "--daily", "04:30", "--tag", "t1", "--tag", "t2", "--description", "hello there")
    assert (data["tags"], data["description"]) == (["t1", "t2"], "hello there")


def test_add_every_policy_option_shows_in_the_json(db: Path) -> None:
    data = add(db, "s", "--daily", "04:30", *ALL_OPTIONS)
    assert {k: data[k] for k in POLICY_KEYS} == {
        "catchup": "all",
        "max_catchup": 7,
        "misfire_grace_seconds": 120.0,
        "overlap": "queue",
        "timeout_seconds": 1800.0,
        "retries": 3,
        "retry_backoff_seconds": 90.0,
    }
    assert without(show(db, "s"), "status", "error") == data


def test_add_catchup_and_overlap_are_read_in_any_case(db: Path) -> None:
    data = add(db, "s", "--daily", "04:30", "--catchup", "ALL", "--overlap", "Queue")
    assert (data["catchup"], data["overlap"]) == ("all", "queue")


def test_add_checks_that_a_real_pipeline_can_be_loaded(db: Path) -> None:
    result = succeeds("add", "s", "--pipeline", REAL_PIPELINE, "--hourly", "5", "--db", db)
    assert result.stdout.startswith("added s: next ")
    assert show(db, "s")["pipeline"] == REAL_PIPELINE


ADD_ERRORS = [
    pytest.param(
        ["--cron", "*/5 * * * *", "--daily", "02:00"],
        2,
        ["give exactly one of --cron, --daily, --hourly or --every", "(got --cron, --daily)"],
        id="two-triggers",
    ),
    pytest.param([], 2, ["give exactly one of --cron, --daily, --hourly or --every"], id="no-trigger"),
    pytest.param(
        ["--daily", "02:00", "--anchor", "2026-01-01T00:00:00Z"], 2, ["--anchor goes with --every only"], id="anchor"
    ),
    pytest.param(
        ["--daily", "02:00", "--catchup", "sometimes"],
        1,
        ["invalid --catchup 'sometimes'", "one of latest, none, all"],
        id="catchup",
    ),
    pytest.param(
        ["--daily", "02:00", "--overlap", "never"],
        1,
        ["invalid --overlap 'never'", "one of skip, queue, allow, replace"],
        id="overlap",
    ),
    pytest.param(
        ["--daily", "02:00", "--param", "noequals"],
        1,
        ["schedule 'x': invalid params 'noequals'", "KEY=VALUE"],
        id="param-without-equals",
    ),
    pytest.param(["--daily", "02:00", "--param", "=v"], 1, ["invalid params '=v'"], id="param-without-key"),
    pytest.param(["--daily", "02:00", "--tz", "Mars/Base"], 1, ["unknown timezone 'Mars/Base'"], id="zone"),
    pytest.param(["--daily", "24:00"], 1, ["'24:00'", "hour 24"], id="daily-time"),
    pytest.param(["--every", "0s"], 1, ["invalid interval '0s'", "longer than zero"], id="interval"),
    pytest.param(["--daily", "02:00", "--retries", "1000"], 1, ["invalid retries 1000", "0 to 100"], id="retries"),
    pytest.param(["--daily", "02:00", "--max-catchup", "0"], 1, ["invalid max_catchup 0"], id="max-catchup"),
    pytest.param(["--daily", "02:00", "--timeout", "0s"], 1, ["invalid interval '0s'"], id="timeout"),
    pytest.param(["--daily", "02:00", "--misfire-grace", "abc"], 1, ["invalid interval 'abc'"], id="misfire-grace"),
    pytest.param(["--every", "1h", "--anchor", "x"], 1, ["invalid --anchor instant 'x'"], id="bad-anchor"),
]


@pytest.mark.parametrize(("options", "exit_code", "words"), ADD_ERRORS)
def test_add_refuses_bad_options_and_stores_nothing(
    db: Path, options: list[str], exit_code: int, words: list[str]
) -> None:
    add(db, "keep", "--hourly", "5")
    result = cli("add", "x", "--pipeline", PIPELINE, "--no-check-pipeline", *options, "--db", db)
    refused(result, exit_code, *words)
    assert names(db) == ["keep"]


def test_add_refuses_a_bad_schedule_name_or_pipeline_reference(db: Path) -> None:
    bad_name = cli("add", "bad name", "--pipeline", PIPELINE, "--no-check-pipeline", "--daily", "02:00", "--db", db)
    refused(bad_name, 1, "invalid schedule name 'bad name'")
    bad_reference = cli("add", "x", "--pipeline", "not a ref", "--no-check-pipeline", "--daily", "02:00", "--db", db)
    refused(bad_reference, 1, "schedule 'x': invalid pipeline 'not a ref'")


def test_add_refuses_a_duplicate_name_and_keeps_the_first(db: Path) -> None:
    first = add(db, "a", "--cron", "*/5 * * * *")
    result = cli("add", "a", "--pipeline", PIPELINE, "--no-check-pipeline", "--daily", "02:00", "--db", db)
    refused(result, 1, "a schedule named 'a' already exists", "use 'edit'")
    assert without(show(db, "a"), "status", "error") == first


def test_add_refuses_a_pipeline_that_cannot_be_loaded_unless_told_not_to_check(db: Path) -> None:
    add(db, "keep", "--hourly", "5")
    result = cli("add", "x", "--pipeline", PIPELINE, "--daily", "02:00", "--db", db)
    refused(result, 1, f"pipeline '{PIPELINE}' cannot be loaded", "No module named 'etl'")
    assert names(db) == ["keep"]


def test_add_refuses_a_module_that_lacks_the_attribute_named(db: Path) -> None:
    result = cli("add", "x", "--pipeline", "flowyml_sched.pipelines:nope", "--daily", "02:00", "--db", db)
    refused(result, 1, "'flowyml_sched.pipelines' has no attribute 'nope'")
    assert names(db) == []


@pytest.mark.parametrize("command", [["add", "z", "--pipeline", "a.b:c", "--no-check-pipeline"], ["next"]])
def test_an_empty_tz_is_refused_not_taken_as_utc(db: Path, command: list[str]) -> None:
    refused(cli(*command, "--daily", "02:00", "--tz", "", "--db", db), 1, "unknown timezone ''")


@pytest.mark.parametrize(
    ("option", "value"), [("--timeout", "5"), ("--misfire-grace", "30"), ("--retry-backoff", "10"), ("--every", "15")]
)
def test_a_duration_without_a_unit_names_the_option_and_the_units(db: Path, option: str, value: str) -> None:
    trigger = [] if option == "--every" else ["--daily", "02:00"]
    result = cli("add", "d", "--pipeline", "a.b:c", "--no-check-pipeline", *trigger, option, value, "--db", db)
    refused(result, 1, f"{option}: invalid interval '{value}'", f"{value}s, {value}m or {value}h")


# -- add --file ---------------------------------------------------------------------------------


def test_add_to_a_file_writes_an_entry_that_validate_accepts(db: Path, schedules_file: Path) -> None:
    result = succeeds(
        "add", "f1", "--pipeline", REAL_PIPELINE, "--daily", "04:30", "--tz", "Europe/Berlin",
        "--param", "region=eu", "--param", "limit=10", "--tag", "reports", "--description", "nightly",
        "--catchup", "all", "--max-catchup", "5", "--misfire-grace", "2m", "--overlap", "queue",
        "--timeout", "30m", "--retries", "2", "--retry-backoff", "90s", "--file", schedules_file,
    )  # fmt: skip
    assert result.stdout == f"added f1 to {schedules_file}\n"
    assert result.stderr == ""
    text = schedules_file.read_text()
    for line in [
        "version: 1",
        "schedules:",
        "  - name: f1",
        f"    pipeline: {REAL_PIPELINE}",
        '    daily: "04:30"',
        "    timezone: Europe/Berlin",
        "    params:",
        "      limit: 10",
        "      region: eu",
        "    description: nightly",
        "    tags: [reports]",
        "    catchup: all",
        "    max_catchup: 5",
        "    misfire_grace: 2m",
        "    overlap: queue",
        "    timeout: 30m",
        "    retries: {max: 2, backoff: 1m30s}",
    ]:
        assert line in text.splitlines()
    assert succeeds("validate", schedules_file).stdout == f"{schedules_file}: 1 schedule, no problems\n"
    assert not db.exists()  # the store is not touched


def test_add_to_a_file_writes_each_trigger_kind(schedules_file: Path) -> None:
    triggers = {
        "c": ["--cron", "0 9 * * MON-FRI"],
        "h": ["--hourly", ":05"],
        "e": ["--every", "1h", "--anchor", "2026-01-01T00:30:00Z"],
        "n": ["--every", "15m"],
        "d": ["--daily", "04:30"],
    }
    for name, trigger in triggers.items():
        succeeds("add", name, "--pipeline", PIPELINE, "--no-check-pipeline", *trigger, "--file", schedules_file)
    lines = schedules_file.read_text().splitlines()
    for line in [
        '    cron: "0 9 * * MON-FRI"',
        "    hourly: 5",
        "    every: 1h",
        '    anchor: "2026-01-01T00:30:00Z"',
        "    every: 15m",
        '    daily: "04:30"',
        "    timezone: UTC",
    ]:
        assert line in lines
    # an interval without --anchor is anchored at the moment it is added
    anchors = [line for line in lines if line.startswith("    anchor: ")]
    assert anchors[0] == '    anchor: "2026-01-01T00:30:00Z"'
    assert re.fullmatch(r'    anchor: "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"', anchors[1])
    result = succeeds("validate", schedules_file, "--no-check-pipeline")
    assert result.stdout == f"{schedules_file}: 5 schedules, no problems\n"


def test_add_to_a_file_takes_the_default_zone_from_the_environment(
    schedules_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWYML_SCHEDULER_TIMEZONE", "Asia/Tokyo")
    succeeds("add", "s", "--pipeline", PIPELINE, "--no-check-pipeline", "--daily", "04:30", "--file", schedules_file)
    assert "    timezone: Asia/Tokyo" in schedules_file.read_text().splitlines()


def test_add_to_a_file_refuses_a_duplicate_name_and_leaves_the_file_alone(schedules_file: Path) -> None:
    succeeds("add", "f1", "--pipeline", PIPELINE, "--no-check-pipeline", "--daily", "04:30", "--file", schedules_file)
    before = schedules_file.read_bytes()
    result = cli("add", "f1", "--pipeline", PIPELINE, "--no-check-pipeline", "--hourly", "5", "--file", schedules_file)
    refused(result, 1, "a schedule named 'f1' already exists")
    assert schedules_file.read_bytes() == before


@pytest.mark.parametrize(
    ("options", "exit_code", "words"),
    [
        (["--daily", "02:00"], 1, [f"pipeline '{PIPELINE}' cannot be loaded"]),
        (["--daily", "02:00", "--no-check-pipeline", "--catchup", "bad"], 1, ["invalid --catchup 'bad'"]),
        (["--daily", "02:00", "--no-check-pipeline", "--anchor", "2026-01-01T00:00:00Z"], 2, ["--anchor"]),
        (["--no-check-pipeline"], 2, ["give exactly one of"]),
    ],
)
def test_add_to_a_file_refuses_bad_options_without_creating_the_file(
    schedules_file: Path, options: list[str], exit_code: int, words: list[str]
) -> None:
    refused(cli("add", "z", "--pipeline", PIPELINE, *options, "--file", schedules_file), exit_code, *words)
    assert not schedules_file.exists()


def test_a_schedule_added_to_a_file_applies_with_the_same_fields_as_one_added_to_the_store(
    tmp_path: Path, schedules_file: Path
) -> None:
    options = ["--daily", "04:30", "--tz", "Europe/Berlin", *ALL_OPTIONS]
    succeeds("add", "s", "--pipeline", REAL_PIPELINE, *options, "--file", schedules_file)
    succeeds("apply", schedules_file, "--db", tmp_path / "from-file.db")
    succeeds("add", "s", "--pipeline", REAL_PIPELINE, *options, "--db", tmp_path / "from-cli.db")
    volatile = ("source", "created_at", "updated_at", "version")
    assert without(show(tmp_path / "from-file.db", "s"), *volatile) == without(
        show(tmp_path / "from-cli.db", "s"), *volatile
    )


# -- edit ---------------------------------------------------------------------------------------


def test_edit_of_one_field_keeps_every_other_field(db: Path) -> None:
    before = add(db, "p", "--daily", "04:30", "--tz", "Europe/Berlin", *ALL_OPTIONS)
    result = succeeds("edit", "p", "--timeout", "45m", "--db", db)
    assert re.fullmatch(rf"changed p \(version 2\): {next_fire('(CET|CEST)')}\n", result.stdout)
    assert result.stderr == ""
    after = show(db, "p")
    assert after["timeout_seconds"] == 2700.0
    assert after["version"] == 2
    assert after["created_at"] == before["created_at"]
    assert instant(after["updated_at"]) >= instant(before["updated_at"])
    assert without(after, "timeout_seconds", "version", "updated_at", "status", "error") == without(
        before, "timeout_seconds", "version", "updated_at"
    )


def test_edit_json_prints_the_changed_schedule(db: Path) -> None:
    add(db, "p", "--daily", "04:30")
    data = json.loads(succeeds("edit", "p", "--retries", "2", "--db", db, "--json").stdout)
    assert list(data) == SCHEDULE_KEYS
    assert (data["retries"], data["version"]) == (2, 2)
    assert without(show(db, "p"), "status", "error") == data


def test_edit_changes_the_trigger_and_keeps_the_rest(db: Path) -> None:
    before = add(db, "p", "--daily", "04:30", "--tz", "Europe/Berlin", *ALL_OPTIONS)
    succeeds("edit", "p", "--cron", "*/10 * * * *", "--db", db)
    after = show(db, "p")
    assert (after["kind"], after["expression"], after["anchor"]) == ("cron", "*/10 * * * *", None)
    assert instant(after["next_fire_at"]).minute % 10 == 0
    changed = ("kind", "expression", "next_fire_at", "version", "updated_at")
    assert without(after, *changed, "status", "error") == without(before, *changed)


def test_edit_from_daily_to_every_anchors_at_now_or_at_the_given_anchor(db: Path) -> None:
    add(db, "p", "--daily", "04:30")
    add(db, "q", "--daily", "04:30")
    before = now_to_the_second()
    succeeds("edit", "p", "--every", "2h", "--db", db)
    after = now_to_the_second()
    p = show(db, "p")
    assert (p["kind"], p["expression"]) == ("interval", "2h")
    assert before <= instant(p["anchor"]) <= after
    succeeds("edit", "q", "--every", "2h", "--anchor", "2026-01-01T00:10:00Z", "--db", db)
    q = show(db, "q")
    assert q["anchor"] == "2026-01-01T00:10:00+00:00"
    assert instant(q["next_fire_at"]).minute == 10


def test_edit_of_an_interval_keeps_its_anchor_when_only_the_interval_changes(db: Path) -> None:
    add(db, "e", "--every", "1h", "--anchor", "2026-01-01T00:30:00Z")
    data = json.loads(succeeds("edit", "e", "--every", "2h", "--db", db, "--json").stdout)
    assert (data["expression"], data["anchor"]) == ("2h", "2026-01-01T00:30:00+00:00")


def test_edit_anchor_alone_moves_an_interval_schedule(db: Path) -> None:
    add(db, "e", "--every", "1h", "--anchor", "2026-01-01T00:30:00Z")
    data = json.loads(succeeds("edit", "e", "--anchor", "2026-02-01T00:10:00Z", "--db", db, "--json").stdout)
    assert (data["kind"], data["expression"], data["anchor"]) == ("interval", "1h", "2026-02-01T00:10:00+00:00")
    assert instant(data["next_fire_at"]).minute == 10
    assert data["version"] == 2


def test_edit_anchor_alone_on_a_daily_schedule_is_a_usage_error_naming_anchor(db: Path) -> None:
    before = add(db, "b", "--daily", "04:30")
    result = cli("edit", "b", "--anchor", "2026-02-01T00:10:00Z", "--db", db)
    refused(result, 2, "--anchor applies to interval schedules only; b is daily")
    assert without(show(db, "b"), "status", "error") == before


def test_edit_anchor_that_is_not_an_instant_is_refused(db: Path) -> None:
    add(db, "e", "--every", "1h", "--anchor", "2026-01-01T00:30:00Z")
    refused(cli("edit", "e", "--anchor", "notadate", "--db", db), 1, "invalid --anchor instant 'notadate'")
    assert show(db, "e")["version"] == 1


def test_edit_param_replaces_the_whole_set(db: Path) -> None:
    add(db, "p", "--daily", "04:30", "--param", "n=10", "--param", "s=hello")
    succeeds("edit", "p", "--param", "only=1", "--db", db)
    assert show(db, "p")["params"] == {"only": 1}


def test_edit_tag_replaces_the_whole_set_and_description_is_set(db: Path) -> None:
    add(db, "p", "--daily", "04:30", "--tag", "t1", "--tag", "t2", "--description", "old")
    succeeds("edit", "p", "--tag", "t3", "--description", "new", "--db", db)
    data = show(db, "p")
    assert (data["tags"], data["description"]) == (["t3"], "new")


def test_edit_policy_options_change_only_the_policy(db: Path) -> None:
    before = add(db, "p", "--daily", "04:30", *ALL_OPTIONS)
    succeeds(
        "edit", "p", "--catchup", "none", "--overlap", "allow", "--max-catchup", "3", "--misfire-grace", "5m",
        "--timeout", "1h", "--retries", "1", "--retry-backoff", "2m", "--db", db,
    )  # fmt: skip
    after = show(db, "p")
    policy = POLICY_KEYS
    assert {k: after[k] for k in policy} == {
        "catchup": "none",
        "max_catchup": 3,
        "misfire_grace_seconds": 300.0,
        "overlap": "allow",
        "timeout_seconds": 3600.0,
        "retries": 1,
        "retry_backoff_seconds": 120.0,
    }
    assert after["version"] == 2
    assert without(after, *policy, "version", "updated_at", "status", "error") == without(
        before, *policy, "version", "updated_at"
    )


def test_edit_tz_moves_the_next_fire_time_to_the_wall_time_in_the_new_zone(db: Path) -> None:
    add(db, "p", "--daily", "04:30")
    succeeds("edit", "p", "--tz", "Europe/Berlin", "--db", db)
    data = show(db, "p")
    assert data["timezone"] == "Europe/Berlin"
    local = instant(data["next_fire_at"]).astimezone(BERLIN)
    assert (local.hour, local.minute) == (4, 30)


def test_edit_without_options_has_nothing_to_change(db: Path) -> None:
    add(db, "p", "--daily", "04:30")
    refused(cli("edit", "p", "--db", db), 2, "nothing to change: give at least one option")
    assert show(db, "p")["version"] == 1


def test_edit_with_two_triggers_is_a_usage_error(db: Path) -> None:
    add(db, "p", "--daily", "04:30")
    result = cli("edit", "p", "--cron", "0 * * * *", "--daily", "03:15", "--db", db)
    refused(result, 2, "give at most one of --cron, --daily, --hourly or --every", "(got --cron, --daily)")


def test_edit_of_an_unknown_schedule_is_an_error(db: Path) -> None:
    add(db, "p", "--daily", "04:30")
    refused(cli("edit", "nosuch", "--timeout", "1m", "--db", db), 1, "no schedule named 'nosuch' in the store")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--tz", "Mars/Base"], ["unknown timezone 'Mars/Base'"]),
        (["--every", "2h", "--anchor", "bad"], ["invalid --anchor instant 'bad'"]),
        (["--pipeline", "not a ref", "--no-check-pipeline"], ["schedule 'p': invalid pipeline 'not a ref'"]),
        (["--pipeline", "nosuch.mod:fn"], ["pipeline 'nosuch.mod:fn' cannot be loaded"]),
        (["--catchup", "bogus"], ["invalid --catchup 'bogus'"]),
        (["--param", "noequals"], ["schedule 'p': invalid params 'noequals'"]),
    ],
)
def test_edit_that_is_refused_changes_no_field(db: Path, options: list[str], words: list[str]) -> None:
    before = add(db, "p", "--daily", "04:30")
    refused(cli("edit", "p", "--timeout", "1h", *options, "--db", db), 1, *words)
    assert without(show(db, "p"), "status", "error") == before


# -- edit --file --------------------------------------------------------------------------------


def _file_with_f1_and_f3(schedules_file: Path) -> Path:
    succeeds(
        "add", "f1", "--pipeline", REAL_PIPELINE, "--daily", "04:30", "--tz", "Europe/Berlin", "--param", "n=10",
        "--param", "s=hello", "--catchup", "all", "--timeout", "30m", "--retries", "2", "--file", schedules_file,
    )  # fmt: skip
    succeeds(
        "add", "f3", "--pipeline", REAL_PIPELINE, "--every", "1h", "--anchor", "2026-01-01T00:30:00Z",
        "--file", schedules_file,
    )  # fmt: skip
    return schedules_file


def test_edit_in_a_file_changes_one_key_and_keeps_the_others(schedules_file: Path) -> None:
    _file_with_f1_and_f3(schedules_file)
    result = succeeds("edit", "f1", "--timeout", "45m", "--file", schedules_file)
    assert result.stdout == f"changed f1 in {schedules_file}\n"
    lines = schedules_file.read_text().splitlines()
    assert "    timeout: 45m" in lines and "    timeout: 30m" not in lines
    for kept in ['    daily: "04:30"', "    timezone: Europe/Berlin", "      n: 10", "    catchup: all"]:
        assert kept in lines
    assert "retries: {max: 2" in schedules_file.read_text()
    assert succeeds("validate", schedules_file).stdout == f"{schedules_file}: 2 schedules, no problems\n"


def test_edit_in_a_file_changes_the_trigger_and_drops_an_anchor_that_no_longer_applies(
    schedules_file: Path,
) -> None:
    _file_with_f1_and_f3(schedules_file)
    succeeds("edit", "f3", "--cron", "0 * * * *", "--file", schedules_file)
    succeeds("edit", "f1", "--every", "2h", "--file", schedules_file)
    text = schedules_file.read_text()
    assert '    cron: "0 * * * *"' in text.splitlines()
    assert "    every: 2h" in text.splitlines()
    assert "daily:" not in text and "every: 1h" not in text and "anchor:" not in text
    succeeds("validate", schedules_file)


def test_edit_in_a_file_param_replaces_the_whole_set_and_policy_keys_are_written(schedules_file: Path) -> None:
    _file_with_f1_and_f3(schedules_file)
    succeeds(
        "edit", "f1", "--param", "only=1", "--hourly", ":07", "--retries", "4", "--overlap", "queue",
        "--file", schedules_file,
    )  # fmt: skip
    lines = schedules_file.read_text().splitlines()
    assert "      only: 1" in lines and "      n: 10" not in lines and "      s: hello" not in lines
    assert "    hourly: 7" in lines
    assert "    overlap: queue" in lines
    assert "    retries: {max: 4}" in lines
    succeeds("validate", schedules_file)


def test_edit_in_a_file_without_options_has_nothing_to_change(schedules_file: Path) -> None:
    _file_with_f1_and_f3(schedules_file)
    refused(cli("edit", "f1", "--file", schedules_file), 2, "nothing to change: give at least one option")


def test_edit_in_a_file_of_an_unknown_schedule_is_an_error_naming_the_file(schedules_file: Path) -> None:
    _file_with_f1_and_f3(schedules_file)
    result = cli("edit", "nosuch", "--timeout", "1m", "--file", schedules_file)
    refused(result, 1, f"no schedule named 'nosuch' in {schedules_file}", "validate FILE")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--anchor", "2026-01-01T00:00:00Z"], ["schedule 'f1': anchor applies only to 'every' schedules"]),
        (["--tz", "Mars/Base"], ["schedule 'f1': unknown timezone 'Mars/Base'"]),
        (["--catchup", "bogus"], ["schedule 'f1': invalid catchup 'bogus'"]),
    ],
)
def test_edit_in_a_file_that_would_leave_it_invalid_is_refused_with_file_and_line(
    schedules_file: Path, options: list[str], words: list[str]
) -> None:
    _file_with_f1_and_f3(schedules_file)
    before = schedules_file.read_bytes()
    result = cli("edit", "f1", *options, "--file", schedules_file)
    refused(result, 1, f"{schedules_file}: 1 problem; the file was not changed", *words)
    assert re.search(rf"\n  {re.escape(str(schedules_file))}:\d+: schedule 'f1'", result.stderr)
    assert schedules_file.read_bytes() == before


def test_edit_of_a_file_that_does_not_exist_is_an_error(schedules_file: Path) -> None:
    refused(cli("edit", "z", "--timeout", "1m", "--file", schedules_file), 1, f"{schedules_file}: no such file")


# -- pause and resume ---------------------------------------------------------------------------


def test_pause_with_a_note_stops_the_schedule_and_shows_the_note(db: Path) -> None:
    add(db, "p", "--daily", "04:30")
    result = succeeds("pause", "p", "--note", "upstream outage", "--db", db)
    assert (result.stdout, result.stderr) == ("paused p\n", "")
    data = show(db, "p")
    assert (data["enabled"], data["pause_note"], data["status"], data["next_fire_at"]) == (
        False,
        "upstream outage",
        "paused",
        None,
    )
    assert data["version"] == 2
    table = succeeds("list", "--db", db).stdout
    assert re.search(r"^p +daily 04:30 +UTC +- +- +paused: upstream outage$", table, re.MULTILINE)


def test_resume_says_when_the_schedule_fires_next_and_clears_the_note(db: Path) -> None:
    add(db, "p", "--daily", "04:30", "--tz", "Europe/Berlin")
    succeeds("pause", "p", "--note", "upstream outage", "--db", db)
    result = succeeds("resume", "p", "--db", db)
    assert re.fullmatch(rf"resumed p: {next_fire('(CET|CEST)')}\n", result.stdout)
    data = show(db, "p")
    assert (data["enabled"], data["pause_note"], data["status"]) == (True, None, "enabled")
    local = instant(data["next_fire_at"]).astimezone(BERLIN)
    assert (local.hour, local.minute) == (4, 30)


def test_resume_of_an_enabled_schedule_says_it_is_not_paused_and_changes_nothing(db: Path) -> None:
    add(db, "p", "--hourly", "5")
    assert re.fullmatch(rf"p is not paused: {next_fire('UTC')}\n", succeeds("resume", "p", "--db", db).stdout)
    assert show(db, "p")["version"] == 1


def test_a_second_pause_without_a_note_keeps_the_note_and_changes_nothing(db: Path) -> None:
    add(db, "p", "--daily", "04:30")
    succeeds("pause", "p", "--note", "upstream outage", "--db", db)
    assert succeeds("pause", "p", "--db", db).stdout == "p is already paused\n"
    data = show(db, "p")
    assert (data["pause_note"], data["version"]) == ("upstream outage", 2)
    assert succeeds("pause", "p", "--note", "until Monday", "--db", db).stdout == "paused p\n"  # a new note
    assert show(db, "p")["pause_note"] == "until Monday"


def test_pause_and_resume_in_a_file_that_change_nothing_leave_it_as_it_is(schedules_file: Path) -> None:
    _file_with_f1_and_f3(schedules_file)
    succeeds("pause", "f3", "--note", "upstream outage", "--file", schedules_file)
    before = schedules_file.read_bytes()
    again = succeeds("pause", "f3", "--file", schedules_file)
    assert again.stdout == f"f3 is already paused in {schedules_file}\n"
    assert succeeds("resume", "f1", "--file", schedules_file).stdout == f"f1 is not paused in {schedules_file}\n"
    assert schedules_file.read_bytes() == before


@pytest.mark.parametrize("command", ["pause", "resume"])
def test_pause_and_resume_of_an_unknown_schedule_is_an_error(db: Path, command: str) -> None:
    add(db, "p", "--daily", "04:30")
    refused(cli(command, "nosuch", "--db", db), 1, "no schedule named 'nosuch' in the store")


def test_pause_and_resume_in_a_file_write_enabled_and_the_note(schedules_file: Path) -> None:
    _file_with_f1_and_f3(schedules_file)
    paused = succeeds("pause", "f3", "--note", "upstream outage", "--file", schedules_file)
    assert paused.stdout == f"paused f3 in {schedules_file}\n"
    lines = schedules_file.read_text().splitlines()
    assert "    enabled: false" in lines and "    pause_note: upstream outage" in lines
    succeeds("validate", schedules_file)
    resumed = succeeds("resume", "f3", "--file", schedules_file)
    assert resumed.stdout == f"resumed f3 in {schedules_file}\n"
    text = schedules_file.read_text()
    assert "enabled:" not in text and "pause_note:" not in text


def test_a_schedule_paused_in_a_file_is_applied_paused(db: Path, schedules_file: Path) -> None:
    _file_with_f1_and_f3(schedules_file)
    succeeds("pause", "f3", "--note", "later", "--file", schedules_file)
    succeeds("apply", schedules_file, "--db", db)
    assert [(e["name"], e["status"], e["pause_note"]) for e in listed(db)] == [
        ("f1", "enabled", None),
        ("f3", "paused", "later"),
    ]


@pytest.mark.parametrize("command", ["pause", "resume", "remove"])
def test_pause_resume_and_remove_in_a_file_of_an_unknown_schedule_is_an_error(
    schedules_file: Path, command: str
) -> None:
    _file_with_f1_and_f3(schedules_file)
    before = schedules_file.read_bytes()
    refused(cli(command, "nosuch", "--file", schedules_file), 1, f"no schedule named 'nosuch' in {schedules_file}")
    assert schedules_file.read_bytes() == before


# -- remove -------------------------------------------------------------------------------------


def test_remove_deletes_the_schedule_from_the_store(db: Path) -> None:
    add(db, "p", "--daily", "04:30")
    add(db, "q", "--daily", "04:30")
    result = succeeds("remove", "p", "--db", db)
    assert (result.stdout, result.stderr) == ("removed p\n", "")
    assert names(db) == ["q"]
    refused(cli("show", "p", "--db", db), 1, "no schedule named 'p' in the store")
    refused(cli("remove", "p", "--db", db), 1, "no schedule named 'p' in the store")


def test_history_of_a_removed_schedule_stays_readable(db: Path) -> None:
    add(db, "r", "--hourly", "5")
    record_runs(
        db,
        Run(
            "r", datetime(2026, 1, 9, 12, 5, tzinfo=UTC), RunStatus.succeeded,
            started_at=datetime(2026, 1, 9, 12, 5, 1, tzinfo=UTC), duration_seconds=2.5, run_id="run-1", worker="w1",
        ),
        Run(
            "r", datetime(2026, 1, 9, 13, 5, tzinfo=UTC), RunStatus.failed,
            started_at=datetime(2026, 1, 9, 13, 5, 1, tzinfo=UTC), duration_seconds=1.25, error="boom\nmore",
            run_id="run-2", worker="w1",
        ),
    )  # fmt: skip
    succeeds("remove", "r", "--db", db)
    table = succeeds("history", "r", "--db", db).stdout
    assert table.splitlines()[0].split("  ")[0] == "scheduled for (UTC)"
    assert re.search(r"^2026-01-09 13:05:00 +failed +2026-01-09 13:05:01 +1\.25s +boom… +run-2 +w1$", table, re.M)
    runs = json.loads(succeeds("history", "r", "--db", db, "--json").stdout)
    assert [(r["scheduled_for"], r["status"]) for r in runs] == [
        ("2026-01-09T13:05:00+00:00", "failed"),
        ("2026-01-09T12:05:00+00:00", "succeeded"),
    ]


def test_remove_from_a_file_deletes_its_entry(schedules_file: Path) -> None:
    _file_with_f1_and_f3(schedules_file)
    result = succeeds("remove", "f1", "--file", schedules_file)
    assert result.stdout == f"removed f1 from {schedules_file}\n"
    assert "name: f1" not in schedules_file.read_text()
    assert succeeds("validate", schedules_file).stdout == f"{schedules_file}: 1 schedule, no problems\n"


# -- clear --------------------------------------------------------------------------------------


def test_clear_yes_removes_every_schedule_and_says_how_many(db: Path) -> None:
    add(db, "p", "--daily", "04:30")
    add(db, "q", "--hourly", "5")
    result = succeeds("clear", "--yes", "--db", db)
    assert (result.stdout, result.stderr) == ("removed 2 schedules\n", "")
    assert listed(db) == []
    assert succeeds("clear", "-y", "--db", db).stdout == "removed 0 schedules\n"
    add(db, "r", "--hourly", "5")
    assert succeeds("clear", "--yes", "--db", db).stdout == "removed 1 schedule\n"


def test_clear_asks_first_and_answering_n_removes_nothing(db: Path) -> None:
    add(db, "p", "--daily", "04:30")
    result = cli("clear", "--db", db, answer="n\n")
    assert result.exit_code == 1
    assert "Remove every schedule from the store? [y/N]" in result.stdout
    assert result.stderr == "nothing removed\n"
    assert names(db) == ["p"]


def test_clear_asks_first_and_answering_y_removes_them(db: Path) -> None:
    add(db, "p", "--daily", "04:30")
    result = succeeds("clear", "--db", db, answer="y\n")
    assert result.stdout.startswith("Remove every schedule from the store? [y/N]")
    assert result.stdout.endswith("removed 1 schedule\n")
    assert names(db) == []


# -- list ---------------------------------------------------------------------------------------


def _four_schedules(db: Path) -> None:
    add(db, "a", "--cron", "*/5 * * * *", "--tag", "t1")
    add(db, "b", "--daily", "04:30", "--tz", "Europe/Berlin", "--tag", "t1", "--tag", "t2")
    add(db, "c", "--hourly", "15")
    add(db, "d", "--every", "15m")
    succeeds("pause", "c", "--note", "maintenance", "--db", db)


def test_list_prints_a_table_of_names_triggers_zones_and_states(db: Path) -> None:
    _four_schedules(db)
    lines = succeeds("list", "--db", db).stdout.splitlines()
    assert re.fullmatch(r"name +schedule +zone +next fire +last run +state", lines[0])
    assert [line.split()[0] for line in lines[1:]] == ["a", "b", "c", "d"]
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d \(in [^)]+\)"
    assert re.fullmatch(rf"a +cron \*/5 \* \* \* \* +UTC +{when} +- +enabled", lines[1])
    assert re.fullmatch(r"b +daily 04:30 +Europe/Berlin +\d{4}-\d\d-\d\d 04:30 \(in [^)]+\) +- +enabled", lines[2])
    assert re.fullmatch(r"c +hourly :15 +UTC +- +- +paused: maintenance", lines[3])
    assert re.fullmatch(rf"d +interval every 15m +UTC +{when} +- +enabled", lines[4])


def test_list_json_gives_each_schedule_with_status_error_and_last_run(db: Path) -> None:
    _four_schedules(db)
    entries = listed(db)
    assert [list(e) for e in entries] == [[*ENTRY_KEYS, "last_run"]] * 4
    assert [(e["name"], e["status"], e["error"], e["last_run"]) for e in entries] == [
        ("a", "enabled", None, None),
        ("b", "enabled", None, None),
        ("c", "paused", None, None),
        ("d", "enabled", None, None),
    ]
    assert without(entries[1], "last_run") == show(db, "b")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--tag", "t1"], ["a", "b"]),
        (["--tag", "t2"], ["b"]),
        (["--tag", "nosuch"], []),
        (["--paused"], ["c"]),
        (["--enabled"], ["a", "b", "d"]),
        (["--enabled", "--tag", "t2"], ["b"]),
    ],
)
def test_list_filters_by_tag_and_state(db: Path, options: list[str], expected: list[str]) -> None:
    _four_schedules(db)
    assert [e["name"] for e in listed(db, *options)] == expected
    table = succeeds("list", "--db", db, *options).stdout.splitlines()
    if expected:
        assert [line.split()[0] for line in table[1:]] == expected
    else:
        assert table == ["no schedules; add one with 'flowyml-sched add' or 'flowyml-sched apply FILE'"]


def test_list_with_both_paused_and_enabled_is_a_usage_error(db: Path) -> None:
    _four_schedules(db)
    refused(cli("list", "--paused", "--enabled", "--db", db), 2, "give --paused or --enabled, not both")


def test_list_of_an_empty_store_says_how_to_add_one(db: Path) -> None:
    succeeds("db", "upgrade", "--db", db)
    assert succeeds("list", "--db", db).stdout == (
        "no schedules; add one with 'flowyml-sched add' or 'flowyml-sched apply FILE'\n"
    )
    assert listed(db) == []


def test_a_missing_store_named_by_the_config_file_says_so(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", f"db_path: {tmp_path / 'nosuch.db'}\n")
    refused(cli("list", "--config", config), 1, "there is no store here yet", "named by the config file's db_path")


def test_db_and_db_url_together_are_a_usage_error(tmp_path: Path) -> None:
    result = cli("list", "--db", tmp_path / "a.db", "--db-url", f"sqlite:///{tmp_path / 'b.db'}")
    refused(result, 2, "give --db or --db-url, not both")


def test_list_on_a_fresh_machine_with_the_default_store_is_empty_with_a_hint(tmp_path: Path) -> None:
    default = tmp_path / "state" / "flowyml-sched" / "scheduler.db"  # XDG_STATE_HOME is tmp_path/state
    result = succeeds("list")
    assert result.stdout == (
        f"no schedules yet (no store at {default}); add one with 'flowyml-sched add' or 'flowyml-sched apply FILE'\n"
    )
    assert json.loads(succeeds("list", "--json").stdout) == []
    assert not default.exists()


def test_list_of_a_store_that_does_not_exist_is_an_error_and_creates_nothing(db: Path) -> None:
    result = cli("list", "--db", db)
    refused(result, 1, f"cannot use the schedule store at {db}", "there is no store here yet")
    assert not db.exists()


def test_list_shows_the_last_run(db: Path) -> None:
    add(db, "r", "--hourly", "5")
    record_runs(db, Run("r", datetime(2020, 1, 9, 12, 5, tzinfo=UTC), RunStatus.succeeded, run_id="run-1"))
    table = succeeds("list", "--db", db).stdout.splitlines()
    assert re.search(r" succeeded \d+d(?: \d+h)? ago +enabled$", table[1])
    (entry,) = listed(db)
    assert list(entry["last_run"]) == RUN_KEYS
    assert (entry["last_run"]["status"], entry["last_run"]["run_id"]) == ("succeeded", "run-1")


# -- show ---------------------------------------------------------------------------------------


def test_show_prints_every_field_then_the_next_three_fire_times(db: Path) -> None:
    add(db, "b", "--daily", "04:30", "--tz", "Europe/Berlin", *ALL_OPTIONS)
    fields, fires = succeeds("show", "b", "--db", db).stdout.split("\n\n")
    rows = [re.split(r" {2,}", line, maxsplit=1) for line in fields.splitlines()]
    assert [row[0] for row in rows] == SCHEDULE_KEYS
    values = dict(rows)
    assert values["params"] == '{"n": 10, "s": "hello"}'
    assert values["tags"] == '["t1", "t2"]'
    assert values["anchor"] == "-"
    assert values["enabled"] == "true"
    assert values["misfire_grace_seconds"] == "120 (2m)"  # seconds, as --json gives them
    assert values["timeout_seconds"] == "1800 (30m)"
    assert values["retry_backoff_seconds"] == "90 (1m30s)"
    fire_lines = fires.splitlines()
    assert re.fullmatch(r"# +fire time \(Europe/Berlin\) +UTC +note", fire_lines[0])
    assert [line.split()[0] for line in fire_lines[1:]] == ["1", "2", "3"]
    for line in fire_lines[1:]:
        assert re.fullmatch(r"\d  \w{3} \d{4}-\d\d-\d\d 04:30:00 \+0[12]00  \d{4}-\d\d-\d\d 0[23]:30:00", line)


def test_show_of_a_paused_schedule_has_no_fire_times(db: Path) -> None:
    add(db, "b", "--daily", "04:30")
    succeeds("pause", "b", "--note", "maintenance", "--db", db)
    out = succeeds("show", "b", "--db", db).stdout
    assert "\n\n" not in out and "fire time" not in out
    assert re.search(r"^pause_note +maintenance$", out, re.MULTILINE)
    assert re.search(r"^next_fire_at +-$", out, re.MULTILINE)


def test_show_json_is_the_stored_schedule_with_status_and_error(db: Path) -> None:
    added = add(db, "b", "--every", "1h", "--anchor", "2026-01-01T00:30:00Z")
    data = show(db, "b")
    assert list(data) == ENTRY_KEYS
    assert data == added | {"status": "enabled", "error": None}


def test_show_of_an_unknown_schedule_is_an_error(db: Path) -> None:
    add(db, "b", "--daily", "04:30")
    refused(cli("show", "nosuch", "--db", db), 1, "no schedule named 'nosuch' in the store", "flowyml-sched list")
    refused(cli("show", "nosuch", "--db", db, "--json"), 1, "no schedule named 'nosuch'")


# -- history ------------------------------------------------------------------------------------


def test_history_of_an_unknown_name_is_an_error(db: Path) -> None:
    add(db, "p", "--daily", "04:30")
    refused(cli("history", "nosuch", "--db", db), 1, "no schedule named 'nosuch' in the store")
    refused(cli("history", "nosuch", "--db", db, "--json"), 1, "no schedule named 'nosuch'")


def test_history_of_an_invalid_name_is_an_error(db: Path) -> None:
    add(db, "p", "--daily", "04:30")
    refused(cli("history", "bad name!", "--db", db), 1, "invalid schedule name 'bad name!'")


def test_history_of_a_schedule_without_runs_says_so(db: Path) -> None:
    add(db, "p", "--daily", "04:30")
    assert succeeds("history", "p", "--db", db).stdout == "no runs recorded for p\n"
    assert json.loads(succeeds("history", "p", "--db", db, "--json").stdout) == []


def test_history_cuts_a_long_error_at_a_word_and_says_json_shows_it_whole(db: Path) -> None:
    add(db, "r", "--hourly", "5")
    long = "the schedule's row cannot be loaded: unknown timezone 'Mars/Olympus' in field timezone"
    record_runs(db, Run("r", datetime(2026, 1, 9, 12, 5, tzinfo=UTC), RunStatus.failed, error=long))
    lines = succeeds("history", "r", "--db", db).stdout.splitlines()
    shown = re.split(r" {2,}", lines[1])[4]
    assert shown == "the schedule's row cannot be loaded: unknown timezone…"
    assert long.startswith(shown[:-1]) and len(shown) <= 60
    assert lines[-1] == "errors shortened (…); 'history --json' shows them whole"


def test_history_lists_runs_newest_first_as_a_table_and_as_json(db: Path) -> None:
    add(db, "r", "--hourly", "5")
    record_runs(
        db,
        Run(
            "r", datetime(2026, 1, 9, 12, 5, tzinfo=UTC), RunStatus.succeeded,
            started_at=datetime(2026, 1, 9, 12, 5, 1, tzinfo=UTC), finished_at=datetime(2026, 1, 9, 12, 5, 3, tzinfo=UTC),
            duration_seconds=2.5, run_id="run-1", worker="w1",
        ),
        Run(
            "r", datetime(2026, 1, 9, 13, 5, tzinfo=UTC), RunStatus.failed,
            started_at=datetime(2026, 1, 9, 13, 5, 1, tzinfo=UTC), duration_seconds=1.25, error="boom\nsecond line",
            run_id="run-2", worker="w1",
        ),
        Run("r", datetime(2026, 1, 9, 14, 5, tzinfo=UTC), RunStatus.missed),
    )  # fmt: skip
    lines = succeeds("history", "r", "--db", db).stdout.splitlines()
    assert [re.split(r" {2,}", line) for line in lines] == [
        ["scheduled for (UTC)", "status", "started (UTC)", "duration", "error", "run id", "worker"],
        ["2026-01-09 14:05:00", "missed", "-", "-"],
        ["2026-01-09 13:05:00", "failed", "2026-01-09 13:05:01", "1.25s", "boom…", "run-2", "w1"],
        ["2026-01-09 12:05:00", "succeeded", "2026-01-09 12:05:01", "2.50s", "run-1", "w1"],
        ["errors shortened (…); 'history --json' shows them whole"],
    ]
    (newest,) = json.loads(succeeds("history", "r", "--db", db, "--json", "--limit", "1").stdout)
    assert list(newest) == RUN_KEYS
    assert (newest["scheduled_for"], newest["status"], newest["attempt"]) == ("2026-01-09T14:05:00+00:00", "missed", 1)
    runs = json.loads(succeeds("history", "r", "--db", db, "--json").stdout)
    assert runs[1] == {
        "schedule": "r",
        "scheduled_for": "2026-01-09T13:05:00+00:00",
        "status": "failed",
        "attempt": 1,
        "started_at": "2026-01-09T13:05:01+00:00",
        "finished_at": None,
        "duration_seconds": 1.25,
        "error": "boom\nsecond line",
        "run_id": "run-2",
        "worker": "w1",
        "host": None,
        "pid": None,
        "log_path": None,
        "retry_at": None,
        "origin": "schedule",
        "params": None,
    }


# -- apply and export ---------------------------------------------------------------------------


def _two_schedules_file(path: Path, daily: str = "04:30", with_two: bool = True) -> Path:
    """``one`` (daily, Berlin) and, unless ``with_two`` is False, ``two`` (cron, UTC, tagged)."""
    lines = [
        "version: 1",
        "schedules:",
        "  - name: one",
        f"    pipeline: {REAL_PIPELINE}",
        f'    daily: "{daily}"',
        "    timezone: Europe/Berlin",
    ]
    if with_two:
        lines += ["  - name: two", f"    pipeline: {REAL_PIPELINE}", '    cron: "*/10 * * * *"', "    tags: [t]"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


UTC_NEXT = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"


def berlin_next(time: str) -> str:
    return rf"\d{{4}}-\d\d-\d\d {time} (CET|CEST)"


def test_apply_dry_run_prints_the_plan_and_changes_nothing(db: Path, schedules_file: Path) -> None:
    _two_schedules_file(schedules_file)
    succeeds("db", "upgrade", "--db", db)
    result = succeeds("apply", schedules_file, "--dry-run", "--db", db)
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert re.fullmatch(rf"\+ create one: next {berlin_next('04:30')}", lines[0])
    assert re.fullmatch(rf"\+ create two: next {UTC_NEXT}", lines[1])
    assert lines[2] == "2 to create, 0 to change, 0 to delete, 0 unchanged: dry run, nothing changed"
    assert result.stderr == ""
    assert listed(db) == []


def test_apply_creates_the_files_schedules_and_again_has_nothing_to_do(db: Path, schedules_file: Path) -> None:
    _two_schedules_file(schedules_file)
    lines = succeeds("apply", schedules_file, "--db", db).stdout.splitlines()
    assert lines[-1] == "2 to create, 0 to change, 0 to delete, 0 unchanged: applied"
    entries = listed(db)
    assert [(e["name"], e["kind"], e["expression"], e["timezone"], e["tags"]) for e in entries] == [
        ("one", "daily", "04:30", "Europe/Berlin", []),
        ("two", "cron", "*/10 * * * *", "UTC", ["t"]),
    ]
    assert {e["source"] for e in entries} == {str(schedules_file.resolve())}
    again = succeeds("apply", schedules_file, "--db", db).stdout
    assert again == "0 to create, 0 to change, 0 to delete, 2 unchanged: nothing to do\n"


def test_apply_of_many_schedules_prints_the_first_changes_and_how_many_more_and_json_lists_all(
    db: Path, schedules_file: Path
) -> None:
    items = "".join(f"  - name: job-{i:03d}\n    pipeline: {PIPELINE}\n    hourly: {i % 60}\n" for i in range(120))
    write(schedules_file, f"version: 1\nschedules:\n{items}")
    lines = succeeds("apply", schedules_file, "--dry-run", "--no-check-pipeline", "--db", db).stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:50]] == [f"+ create job-{i:03d}" for i in range(50)]
    assert lines[50:] == [
        "... and 70 more (--json lists every one)",
        "120 to create, 0 to change, 0 to delete, 0 unchanged: dry run, nothing changed",
    ]
    planned = json.loads(succeeds("apply", schedules_file, "--json", "--no-check-pipeline", "--db", db).stdout)
    assert [c["name"] for c in planned["create"]] == [f"job-{i:03d}" for i in range(120)]
    assert len(listed(db)) == 120


def test_apply_of_a_changed_file_prints_the_fields_and_next_fire_times_before_and_after(
    db: Path, schedules_file: Path
) -> None:
    _two_schedules_file(schedules_file)
    succeeds("apply", schedules_file, "--db", db)
    _two_schedules_file(schedules_file, daily="05:30")
    lines = succeeds("apply", schedules_file, "--db", db).stdout.splitlines()
    assert re.fullmatch(
        rf"~ change one \(trigger\): next {berlin_next('04:30')} -> {berlin_next('05:30')}",
        lines[0],
    )
    assert lines[1] == "0 to create, 1 to change, 0 to delete, 1 unchanged: applied"
    assert show(db, "one")["expression"] == "05:30"


def test_apply_json_lists_names_per_action_with_next_fire_times(db: Path, schedules_file: Path) -> None:
    _two_schedules_file(schedules_file)
    dry = json.loads(succeeds("apply", schedules_file, "--dry-run", "--json", "--db", db).stdout)
    assert list(dry) == ["applied", "create", "change", "delete", "unchanged"]
    assert dry["applied"] is False
    assert [list(c) for c in dry["create"]] == [["name", "next_fire"]] * 2
    assert [c["name"] for c in dry["create"]] == ["one", "two"]
    assert instant(dry["create"][0]["next_fire"]).astimezone(BERLIN).strftime("%H:%M") == "04:30"
    assert (dry["change"], dry["delete"], dry["unchanged"]) == ([], [], [])
    applied = json.loads(succeeds("apply", schedules_file, "--json", "--db", db).stdout)
    assert applied["applied"] is True and [c["name"] for c in applied["create"]] == ["one", "two"]
    _two_schedules_file(schedules_file, daily="05:30")
    changed = json.loads(succeeds("apply", schedules_file, "--json", "--db", db).stdout)
    assert changed["applied"] is True
    (change,) = changed["change"]
    assert list(change) == ["name", "fields", "next_fire_before", "next_fire_after"]
    assert (change["name"], change["fields"]) == ("one", ["trigger"])
    assert instant(change["next_fire_after"]).astimezone(BERLIN).strftime("%H:%M") == "05:30"
    assert changed["unchanged"] == ["two"]
    nothing = json.loads(succeeds("apply", schedules_file, "--json", "--db", db).stdout)
    assert nothing == {"applied": False, "create": [], "change": [], "delete": [], "unchanged": ["one", "two"]}


def test_apply_prune_deletes_only_what_the_file_dropped(db: Path, schedules_file: Path) -> None:
    _two_schedules_file(schedules_file)
    succeeds("apply", schedules_file, "--db", db)
    add(db, "cli1", "--hourly", "5")
    _two_schedules_file(schedules_file, with_two=False)
    without_prune = succeeds("apply", schedules_file, "--db", db).stdout
    assert without_prune == "0 to create, 0 to change, 0 to delete, 1 unchanged: nothing to do\n"
    dry = succeeds("apply", schedules_file, "--prune", "--dry-run", "--db", db).stdout
    assert dry == "- delete two\n0 to create, 0 to change, 1 to delete, 1 unchanged: dry run, nothing changed\n"
    dry_json = json.loads(succeeds("apply", schedules_file, "--prune", "--dry-run", "--json", "--db", db).stdout)
    assert dry_json["applied"] is False
    assert [list(d) for d in dry_json["delete"]] == [["name", "next_fire_before"]]
    assert dry_json["delete"][0]["name"] == "two"
    assert names(db) == ["cli1", "one", "two"]
    pruned = succeeds("apply", schedules_file, "--prune", "--db", db).stdout
    assert pruned == "- delete two\n0 to create, 0 to change, 1 to delete, 1 unchanged: applied\n"
    assert names(db) == ["cli1", "one"]


def test_apply_of_a_file_with_problems_names_each_with_file_and_line_and_stores_nothing(
    db: Path, tmp_path: Path
) -> None:
    bad = write(
        tmp_path / "bad.yaml",
        f"""
        version: 1
        schedules:
          - name: bad
            pipeline: {REAL_PIPELINE}
            daily: "25:00"
          - name: bad2
            pipeline: {REAL_PIPELINE}
        """,
    )
    add(db, "keep", "--hourly", "5")
    result = cli("apply", bad, "--db", db)
    refused(
        result,
        1,
        f"{bad}: 2 problems; nothing was applied",
        f"{bad}:5: schedule 'bad': invalid daily time '25:00'",
        f"{bad}:6: schedule 'bad2': no trigger",
    )
    assert names(db) == ["keep"]


def test_export_writes_yaml_that_applies_back_with_no_changes(db: Path, tmp_path: Path) -> None:
    add(db, "p", "--daily", "04:30", "--tz", "Europe/Berlin", *ALL_OPTIONS)
    add(db, "q", "--every", "15m")
    add(db, "r", "--hourly", "7")
    succeeds("pause", "r", "--note", "why not", "--db", db)
    exported = tmp_path / "exported.yaml"
    result = succeeds("export", "--output", exported, "--db", db)
    assert (result.stdout, result.stderr) == ("", f"wrote {exported}\n")
    lines = exported.read_text().splitlines()
    for line in [
        "version: 1",
        "  - name: p",
        "  - name: q",
        "  - name: r",
        "    enabled: false",
        "    pause_note: why not",
    ]:
        assert line in lines
    succeeds("validate", exported, "--no-check-pipeline")
    before = listed(db)
    plan = succeeds("apply", exported, "--no-check-pipeline", "--db", db).stdout
    assert plan == "0 to create, 0 to change, 0 to delete, 3 unchanged: nothing to do\n"
    fields = ("source", "version", "updated_at")
    assert [without(e, *fields) for e in listed(db)] == [without(e, *fields) for e in before]
    as_json = json.loads(succeeds("apply", exported, "--no-check-pipeline", "--json", "--db", db).stdout)
    assert as_json == {"applied": False, "create": [], "change": [], "delete": [], "unchanged": ["p", "q", "r"]}


def test_export_prints_the_yaml_on_stdout_without_output(db: Path) -> None:
    add(db, "q", "--every", "1h", "--anchor", "2026-01-01T00:30:00Z")
    result = succeeds("export", "--db", db)
    assert result.stdout.startswith("# flowyml-sched schedules")
    lines = result.stdout.splitlines()
    for line in ["version: 1", "schedules:", "  - name: q", f"    pipeline: {PIPELINE}", "    every: 1h"]:
        assert line in lines
    assert '    anchor: "2026-01-01T00:30:00Z"' in lines
    assert result.stderr == ""


def test_export_to_a_path_that_cannot_be_written_is_an_error(db: Path, tmp_path: Path) -> None:
    add(db, "q", "--hourly", "5")
    target = tmp_path / "missing" / "x.yaml"
    refused(cli("export", "-o", target, "--db", db), 2, f"cannot write {target}")


# -- validate -----------------------------------------------------------------------------------


def test_validate_of_a_good_file_counts_its_schedules(schedules_file: Path, db: Path) -> None:
    _two_schedules_file(schedules_file)
    result = succeeds("validate", schedules_file)
    assert (result.stdout, result.stderr) == (f"{schedules_file}: 2 schedules, no problems\n", "")
    assert not db.exists()


def test_validate_of_a_bad_file_names_each_problem_with_file_and_line(tmp_path: Path) -> None:
    bad = write(
        tmp_path / "bad.yaml",
        f"""
        version: 1
        schedules:
          - name: bad
            pipeline: {REAL_PIPELINE}
            daily: "25:00"
          - name: bad2
            pipeline: {REAL_PIPELINE}
        """,
    )
    result = cli("validate", bad)
    refused(result, 1)
    assert result.stderr.splitlines() == [
        f"{ERROR}{bad}: 2 problems",  # validate applies nothing: it does not say it did not
        f"  {bad}:5: schedule 'bad': invalid daily time '25:00': hour 25 is past 23. "
        "Expected HH:MM from 00:00 to 23:59, such as 02:30",
        f"  {bad}:6: schedule 'bad2': no trigger: give exactly one of cron, daily, hourly or every",
    ]


def test_validate_checks_pipelines_unless_told_not_to(tmp_path: Path) -> None:
    unloadable = write(
        tmp_path / "s.yaml",
        f"""
        version: 1
        schedules:
          - name: s
            pipeline: {PIPELINE}
            hourly: 5
        """,
    )
    refused(cli("validate", unloadable), 1, f"{unloadable}:3: schedule 's': pipeline '{PIPELINE}' cannot be loaded")
    assert succeeds("validate", unloadable, "--no-check-pipeline").stdout == f"{unloadable}: 1 schedule, no problems\n"


def test_validate_of_a_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nosuch.yaml"
    refused(cli("validate", missing), 1, f"cannot use the schedules file {missing}: no such file")


# -- db upgrade, pipelines ----------------------------------------------------------------------


def test_db_upgrade_creates_the_store_and_says_the_schema_is_current(db: Path) -> None:
    for _ in range(2):
        result = succeeds("db", "upgrade", "--db", db)
        assert (result.stdout, result.stderr) == ("the store's schema is current\n", "")
    assert db.exists()
    assert listed(db) == []


def test_pipelines_json_is_a_list_of_names_and_targets_that_the_text_output_shows_too() -> None:
    found = json.loads(succeeds("pipelines", "--json").stdout)
    assert isinstance(found, list)
    for item in found:
        assert list(item) == ["name", "target"]
    text = succeeds("pipelines").stdout
    if found:
        assert text.splitlines() == [f"{p['name']}  {p['target']}" for p in found]
    else:
        assert text == "no pipelines registered in the entry-point group flowyml_sched.pipelines\n"


# -- health, run-worker --check -----------------------------------------------------------------


def test_health_json_is_down_with_exit_1_when_schedules_have_no_live_worker(db: Path) -> None:
    add(db, "p", "--hourly", "5")
    result = cli("health", "--json", "--db", db)
    assert result.exit_code == 1 and result.stderr == ""
    report = json.loads(result.stdout)
    assert list(report) == HEALTH_KEYS
    assert without(report, "checked_at") == {
        "status": "down",
        "window_seconds": 86400.0,
        "workers": [],
        "lock_warnings": [],
        "late": [],
        "broken": [],
        "success_rate": None,
        "schedules": {},
        "last_failure": None,
    }
    text = cli("health", "--db", db)
    assert text.exit_code == 1
    assert text.stdout == (
        "status: down; 0 live worker(s); success rate - over 24 h\n"
        "  no worker is running: start one with 'flowyml-sched run-worker' (or its systemd unit)\n"
    )


def test_list_says_when_schedules_are_past_their_fire_time_unclaimed(db: Path) -> None:
    add(db, "p", "--every", "1m", "--anchor", "2026-01-01T00:00:00Z")
    add(db, "q", "--every", "1m", "--anchor", "2026-01-01T00:00:00Z")
    with open_store(f"sqlite:///{db}", create=False) as store:  # as if no worker had claimed them for an hour
        for name in ("p", "q"):
            stored = store.get(name)
            store.replace(
                dataclasses.replace(stored, next_fire_at=datetime.now(UTC) - timedelta(hours=1)), datetime.now(UTC)
            )
    last = succeeds("list", "--db", db).stdout.splitlines()[-1]
    assert last == (
        "2 schedules are past their fire time, unclaimed: is a worker running? (check with "
        "'flowyml-sched run-worker --check'; start one with 'flowyml-sched run-worker')"
    )


def test_health_of_an_empty_store_is_ok(db: Path) -> None:
    succeeds("db", "upgrade", "--db", db)
    report = json.loads(succeeds("health", "--json", "--window", "7d", "--db", db).stdout)
    assert (report["status"], report["window_seconds"], report["workers"]) == ("ok", 604800.0, [])


def test_health_with_a_bad_window_is_an_error(db: Path) -> None:
    add(db, "p", "--hourly", "5")
    refused(cli("health", "--window", "bogus", "--db", db), 1, "invalid interval 'bogus'")


def test_run_worker_check_without_a_worker_says_0_live_workers_and_exits_1(db: Path) -> None:
    add(db, "p", "--hourly", "5")
    result = cli("run-worker", "--check", "--db", db)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "0 live workers\n", "")


def test_run_worker_check_of_a_store_that_does_not_exist_is_an_error(db: Path) -> None:
    refused(cli("run-worker", "--check", "--db", db), 1, "there is no store here yet")
    assert not db.exists()


@pytest.mark.parametrize("content", [None, "version: 1\nschedules:\n\t- name: a\n"])
def test_run_worker_with_a_missing_or_invalid_sync_file_at_start_exits_1_naming_it(
    tmp_path: Path, content: str | None
) -> None:
    sync = tmp_path / "s.yaml"
    if content is not None:
        sync.write_text(content)
    result = cli("run-worker", "--once", "--sync", sync, "--db", tmp_path / "s.db", "--state-dir", tmp_path / "state")
    refused(result, 1, str(sync))
    assert not (tmp_path / "s.db").exists()  # refused before anything started


def test_show_gives_the_misfire_grace_in_force_and_no_timeout_when_none_is_set(db: Path) -> None:
    add(db, "p", "--daily", "04:30")
    lines = succeeds("show", "p", "--db", db).stdout.splitlines()
    values = dict(re.split(r" {2,}", line, maxsplit=1) for line in lines if re.match(r"^[a-z_]+ {2,}", line))
    assert values["misfire_grace_seconds"] == "60 (1m, the default)"
    assert values["timeout_seconds"] == "- (no timeout)"
    assert values["retry_backoff_seconds"] == "60 (1m)"


# -- trigger and backfill ------------------------------------------------------------------------


def test_trigger_asks_for_one_run_now_marked_manual_and_says_that_no_worker_runs_yet(db: Path) -> None:
    add(db, "nightly", "--daily", "02:00", "--param", "day=today")
    before = datetime.now(timezone.utc)
    result = succeeds("trigger", "nightly", "--param", "day=2026-03-01", "--param", "limit=3", "--db", db, "--json")
    run = json.loads(result.stdout)
    assert (run["status"], run["origin"], run["params"]) == ("pending", "manual", {"day": "2026-03-01", "limit": 3})
    assert before <= datetime.fromisoformat(run["scheduled_for"]) <= datetime.now(timezone.utc)
    assert "no worker is running" in result.stderr and "flowyml-sched run-worker" in result.stderr
    table = succeeds("history", "nightly", "--db", db).stdout
    assert "pending (manual)" in table


def test_backfill_lists_then_queues_the_fire_times_of_a_range_across_dst_and_a_second_queues_none(db: Path) -> None:
    add(db, "berlin", "--daily", "02:00", "--tz", "Europe/Berlin")
    span = ("--start", "2026-03-27T00:00:00+01:00", "--end", "2026-04-01T00:00:00+02:00")
    dry = succeeds("backfill", "berlin", *span, "--dry-run", "--db", db).stdout
    assert dry.count("  would run\n") == 5
    assert "Sun 2026-03-29 03:00:00 +0200" in dry and "does not exist" in dry
    assert "dry run: 5 fire times would run; nothing was stored" in dry
    assert json.loads(succeeds("history", "berlin", "--db", db, "--json").stdout) == []
    done = json.loads(succeeds("backfill", "berlin", *span, "--db", db, "--json").stdout)
    assert (
        done["queued"]
        == done["fire_times"]
        == [
            "2026-03-27T01:00:00+00:00",
            "2026-03-28T01:00:00+00:00",
            "2026-03-29T01:00:00+00:00",
            "2026-03-30T00:00:00+00:00",
            "2026-03-31T00:00:00+00:00",
        ]
    )
    again = succeeds("backfill", "berlin", *span, "--db", db).stdout
    assert again.count("in history: pending") == 5
    assert "nothing queued: every fire time of berlin in the range is in its history already" in again
    history = json.loads(succeeds("history", "berlin", "--db", db, "--json").stdout)
    assert [(r["status"], r["origin"]) for r in history] == [("pending", "backfill")] * 5


@pytest.mark.parametrize(
    ("args", "exit_code", "words"),
    [
        (["trigger", "nope"], 1, ["no schedule named 'nope'"]),
        (["trigger", "nightly", "--param", "day"], 1, ["expected KEY=VALUE"]),
        (["backfill", "nope", "--start", "2026-01-01T00:00:00Z", "--end", "2026-01-02T00:00:00Z"], 1, ["'nope'"]),
        (["backfill", "nightly", "--start", "2026-01-01T00:00:00", "--end", "2026-01-02T00:00:00Z"], 1,
         ["--start", "no UTC offset"]),
        (["backfill", "nightly", "--start", "2026-01-02T00:00:00Z", "--end", "2026-01-01T00:00:00Z"], 2,
         ["is not before the end"]),
        (["backfill", "nightly", "--start", "2026-01-01T00:00:00Z", "--end", "2099-01-01T00:00:00Z"], 2,
         ["is after now"]),
        (["backfill", "nightly", "--start", "2026-01-01T00:00:00Z", "--end", "2026-02-01T00:00:00Z", "--max", "7"], 2,
         ["more than 7 fire times", "--max"]),
    ],
)  # fmt: skip
def test_trigger_and_backfill_refuse_bad_input_and_store_nothing(
    db: Path, args: list[str], exit_code: int, words: list[str]
) -> None:
    add(db, "nightly", "--daily", "02:00")
    refused(cli(*args, "--db", db), exit_code, *words)
    assert json.loads(succeeds("history", "nightly", "--db", db, "--json").stdout) == []


def test_backfill_before_an_intervals_anchor_says_its_fire_times_count_from_it(db: Path) -> None:
    add(db, "hourly", "--every", "1h", "--anchor", "2026-06-01T00:00:00Z")
    out = succeeds("backfill", "hourly", "--start", "2026-05-01T00:00:00Z", "--end", "2026-05-02T00:00:00Z", "--db", db)
    assert out.stdout == (
        "hourly has no fire time in 2026-05-01T00:00:00Z .. 2026-05-02T00:00:00Z "
        "(its fire times count from its anchor, 2026-06-01T00:00:00Z)\n"
    )


# -- exclusions ---------------------------------------------------------------------------------

EXCLUDING = (
    "--exclude-holidays", "us-ny", "--exclude-date", "2026-12-24", "--exclude-date", "2026-12-31",
    "--exclude-range", "2026-08-03..2026-08-14", "--on-excluded", "next_business_day",
)  # fmt: skip
EXCLUDED_JSON = {
    "holidays": {"country": "US", "subdivision": "NY"},
    "dates": ["2026-12-24", "2026-12-31"],
    "ranges": [{"from": "2026-08-03", "to": "2026-08-14"}],
    "on_excluded": "next_business_day",
}


def test_add_stores_the_exclusions_show_prints_them_and_export_and_apply_round_trip(db: Path, tmp_path: Path) -> None:
    data = add(db, "r", "--cron", "0 9 * * 1-5", "--tz", "America/New_York", *EXCLUDING)
    assert data["exclusions"] == EXCLUDED_JSON
    assert show(db, "r")["exclusions"] == EXCLUDED_JSON
    shown = succeeds("show", "r", "--db", db).stdout
    assert re.search(
        r"^exclusions +holidays US-NY, 2026-12-24, 2026-12-31, 2026-08-03\.\.2026-08-14; next_business_day$",
        shown,
        re.M,
    )
    exported = succeeds("export", "--db", db).stdout
    assert textwrap.dedent("""\
        exclude:
          holidays: {country: US, subdivision: NY}
          dates: ["2026-12-24", "2026-12-31"]
          ranges: [{from: "2026-08-03", to: "2026-08-14"}]
        on_excluded: next_business_day
    """) in textwrap.dedent(exported.split("timezone: America/New_York\n", 1)[1])
    copy = tmp_path / "copy.yaml"
    copy.write_text(exported)
    other = tmp_path / "other.db"
    succeeds("apply", copy, "--db", other, "--no-check-pipeline")
    assert without(show(other, "r"), "source", "created_at", "updated_at") == without(
        data, "source", "created_at", "updated_at"
    ) | {"status": "enabled", "error": None}
    assert succeeds("apply", copy, "--db", other, "--no-check-pipeline").stdout.endswith("1 unchanged: nothing to do\n")


def test_edit_replaces_each_part_of_the_exclusions_given_and_no_exclusions_clears_them(db: Path) -> None:
    add(db, "r", "--cron", "0 9 * * 1-5", *EXCLUDING)
    succeeds("edit", "r", "--exclude-date", "2027-01-04", "--db", db)
    assert show(db, "r")["exclusions"] == EXCLUDED_JSON | {"dates": ["2027-01-04"]}
    succeeds("edit", "r", "--exclude-market", "NYSE", "--on-excluded", "skip", "--db", db)
    assert show(db, "r")["exclusions"] == EXCLUDED_JSON | {
        "holidays": {"market": "NYSE"},
        "dates": ["2027-01-04"],
        "on_excluded": "skip",
    }
    succeeds("edit", "r", "--no-exclusions", "--exclude-date", "2027-02-01", "--db", db)
    assert show(db, "r")["exclusions"] == {"dates": ["2027-02-01"], "on_excluded": "skip"}
    succeeds("edit", "r", "--no-exclusions", "--db", db)
    assert show(db, "r")["exclusions"] is None


def test_an_exclusion_that_takes_the_next_fire_time_moves_next_fire_at(db: Path) -> None:
    today = datetime.now(UTC).date()
    add(db, "d", "--daily", "04:30")
    range_text = f"{today.isoformat()}..{(today + timedelta(days=2)).isoformat()}"
    data = json.loads(succeeds("edit", "d", "--exclude-range", range_text, "--db", db, "--json").stdout)
    assert instant(data["next_fire_at"]) == datetime.combine(
        today + timedelta(days=3), datetime.min.time(), UTC
    ).replace(hour=4, minute=30)


def test_apply_plan_names_the_exclusions_change_and_the_next_fire_times_before_and_after(
    db: Path, schedules_file: Path
) -> None:
    today = datetime.now(UTC).date()
    entry = 'version: 1\nschedules:\n  - name: d\n    pipeline: etl.jobs:run\n    daily: "04:30"\n    timezone: UTC\n'
    schedules_file.write_text(entry)
    succeeds("apply", schedules_file, "--db", db, "--no-check-pipeline")
    before = show(db, "d")["next_fire_at"]
    schedules_file.write_text(
        entry + f'    exclude:\n      ranges: [{{from: "{today}", to: "{today + timedelta(days=2)}"}}]\n'
    )
    lines = succeeds("apply", schedules_file, "--db", db, "--no-check-pipeline").stdout.splitlines()
    after = datetime.combine(today + timedelta(days=3), datetime.min.time(), UTC).replace(hour=4, minute=30)
    assert re.fullmatch(rf"~ change d \(exclude\): next \S+ \S+ UTC -> {after:%Y-%m-%d %H:%M} UTC", lines[0]), lines
    assert before != show(db, "d")["next_fire_at"] == after.isoformat()


def test_next_show_excluded_lists_the_skipped_and_moved_fire_times_with_the_holidays_names() -> None:
    result = succeeds(
        "next", "--cron", "0 9 * * 4", "--tz", "America/New_York", "--exclude-holidays", "US-NY",
        "--on-excluded", "next_business_day", "--after", "2026-11-18T00:00:00Z", "-n", "3", "--show-excluded",
    )  # fmt: skip
    rows = [re.split(r"  +", line.strip()) for line in result.stdout.splitlines()[1:]]
    assert rows == [
        ["1", "Thu 2026-11-19 09:00:00 -0500", "2026-11-19 14:00:00"],
        [
            "-",
            "Thu 2026-11-26 09:00:00 -0500",
            "2026-11-26 14:00:00",
            "Thanksgiving Day: moved to Fri 2026-11-27 09:00",
        ],
        ["2", "Fri 2026-11-27 09:00:00 -0500", "2026-11-27 14:00:00", "moved from Thu 2026-11-26 (Thanksgiving Day)"],
        ["3", "Thu 2026-12-03 09:00:00 -0500", "2026-12-03 14:00:00"],
    ]
    skipped = json.loads(
        succeeds(
            "next",
            "--cron",
            "0 9 * * 4",
            "--tz",
            "America/New_York",
            "--exclude-holidays",
            "US-NY",
            "--after",
            "2026-11-18T00:00:00Z",
            "-n",
            "2",
            "--show-excluded",
            "--json",
        ).stdout
    )
    assert [f["fire_time"] for f in skipped["fire_times"]] == ["2026-11-19T09:00:00-05:00", "2026-12-03T09:00:00-05:00"]
    assert skipped["excluded"] == [
        {
            "fire_time": "2026-11-26T09:00:00-05:00",
            "utc": "2026-11-26T14:00:00Z",
            "reason": "Thanksgiving Day",
            "moved_to": None,
            "merged": False,
        }
    ]


@pytest.mark.parametrize(
    ("options", "exit_code", "words"),
    [
        (["--exclude-holidays", "XX"], 1, ["invalid holidays country 'XX'"]),
        (["--exclude-holidays", "Germany"], 1, ["'Germany'", "did you mean DE"]),
        (["--exclude-holidays", "US-XY"], 1, ["subdivision of US 'XY'", "NY"]),
        (["--exclude-market", "NYS"], 1, ["market 'NYS'", "NYSE"]),
        (["--exclude-date", "2026-02-30"], 1, ["--exclude-date '2026-02-30'", "YYYY-MM-DD"]),
        (["--exclude-range", "2026-08-14..2026-08-03"], 1, ["'2026-08-14..2026-08-03'", "ends before it starts"]),
        (["--exclude-range", "2026-08-14"], 1, ["--exclude-range", "FROM..TO"]),
        (
            ["--on-excluded", "nextday", "--exclude-date", "2026-12-24"],
            1,
            ["--on-excluded 'nextday'", "skip, next_business_day"],
        ),
        (["--exclude-holidays", "US", "--exclude-market", "NYSE"], 2, ["--exclude-holidays or --exclude-market"]),
        (
            ["--every", "15m", "--exclude-holidays", "US", "--on-excluded", "next_business_day"],
            1,
            ["shorter than a day"],
        ),
        (["--cron", "0 9 25 12 *", "--exclude-holidays", "US"], 1, ["would never run"]),
        (["--on-excluded", "next_business_day"], 2, ["excludes no dates: give --exclude-holidays"]),
    ],
)
def test_add_refuses_bad_exclusions_naming_the_option_and_stores_nothing(
    db: Path, options: list[str], exit_code: int, words: list[str]
) -> None:
    trigger = [] if any(o in options for o in ("--every", "--cron")) else ["--daily", "09:00"]
    result = cli("add", "r", "--pipeline", PIPELINE, "--no-check-pipeline", *trigger, *options, "--db", db)
    refused(result, exit_code, *words)
    assert not db.exists() or listed(db) == []


def test_validate_names_the_line_of_a_bad_date_and_of_an_unknown_key_under_exclude(schedules_file: Path) -> None:
    schedules_file.write_text(
        'version: 1\nschedules:\n  - name: r\n    pipeline: etl.jobs:run\n    daily: "09:00"\n'
        "    exclude:\n      dates:\n        - 2026-12-24\n        - 2026-12-32\n      holiday: US\n"
        "    on_excluded: later\n"
    )
    result = cli("validate", schedules_file, "--no-check-pipeline")
    assert result.exit_code == 1
    assert f"{schedules_file}:9: schedule 'r': invalid exclude dates '2026-12-32'" in result.stderr
    assert (
        f"{schedules_file}:10: schedule 'r': unknown key 'holiday' in exclude; did you mean 'holidays'?"
        in result.stderr
    )
    assert f"{schedules_file}:11: schedule 'r': invalid on_excluded 'later'" in result.stderr


def test_edit_with_on_excluded_alone_is_refused_while_nothing_is_excluded(db: Path) -> None:
    add(db, "r", "--daily", "09:00")
    refused(cli("edit", "r", "--on-excluded", "previous_business_day", "--db", db), 2, "r excludes no dates")


def test_next_refuses_to_move_the_fire_times_of_an_interval_shorter_than_a_day_as_add_does() -> None:
    result = cli("next", "--every", "1h", "--exclude-holidays", "US", "--on-excluded", "next_business_day")
    refused(result, 1, "shorter than a day")


def test_edit_of_a_file_replaces_each_part_of_the_exclusions_given_and_no_exclusions_removes_them(
    schedules_file: Path,
) -> None:
    succeeds(
        "add", "r", "--pipeline", PIPELINE, "--no-check-pipeline", "--cron", "0 9 * * 1-5",
        "--exclude-holidays", "US-NY", "--exclude-range", "2027-08-02..2027-08-13", "--file", schedules_file,
    )  # fmt: skip
    succeeds("edit", "r", "--exclude-date", "2026-12-31", "--exclude-date", "2026-12-24", "--file", schedules_file)
    succeeds("edit", "r", "--exclude-market", "NYSE", "--on-excluded", "next_business_day", "--file", schedules_file)
    assert textwrap.dedent("""        exclude:
          holidays: {market: NYSE}
          dates: ["2026-12-24", "2026-12-31"]
          ranges: [{from: "2027-08-02", to: "2027-08-13"}]
        on_excluded: next_business_day
    """) in textwrap.dedent(schedules_file.read_text().split('cron: "0 9 * * 1-5"\n', 1)[1])
    succeeds("edit", "r", "--no-exclusions", "--file", schedules_file)
    assert "exclude" not in schedules_file.read_text()
    succeeds("validate", schedules_file, "--no-check-pipeline")


def test_validate_warns_of_an_on_excluded_with_nothing_excluded_at_its_line(schedules_file: Path) -> None:
    schedules_file.write_text(
        'version: 1\nschedules:\n  - name: r\n    pipeline: etl.jobs:run\n    daily: "09:00"\n'
        "    on_excluded: next_business_day\n"
    )
    result = succeeds("validate", schedules_file, "--no-check-pipeline")
    assert f"{schedules_file}:6: schedule 'r': on_excluded: next_business_day has no effect" in result.stderr
