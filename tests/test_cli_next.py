"""The ``flowyml-sched next`` command, and the parsers behind its schedule options.

Most cases go through Typer's CliRunner; a few run the installed console script as a real
process, so that the entry point, exit codes and stderr are what a user sees. Every command
passes ``--tz`` and ``--after``: the output then depends on neither the clock nor the
environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from flowyml_sched.cli.app import app
from flowyml_sched.cronspec import compile_cron
from flowyml_sched.errors import InvalidCronExpression, InvalidDuration, InvalidMinute, InvalidTimeOfDay
from flowyml_sched.timing import fire_times
from flowyml_sched.triggers import (
    CronTrigger,
    DailyTrigger,
    HourlyTrigger,
    parse_duration,
    parse_minute,
    parse_time_of_day,
)

UTC = timezone.utc
runner = CliRunner()


def _next(*args: str):
    return runner.invoke(app, ["next", *args])


def _json_next(*args: str) -> list[dict[str, str]]:
    result = _next(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# -- --json output ------------------------------------------------------------------------------


def test_json_output_is_an_array_of_fire_times_with_offset_and_utc():
    items = _json_next("--daily", "02:30", "--tz", "Europe/Berlin", "--after", "2026-03-28T12:00:00+01:00", "-n", "3")
    assert items == [
        {
            "fire_time": "2026-03-29T03:00:00+02:00",
            "utc": "2026-03-29T01:00:00Z",
            "note": "02:30 does not exist: moved to the end of the DST gap",
        },
        {"fire_time": "2026-03-30T02:30:00+02:00", "utc": "2026-03-30T00:30:00Z"},
        {"fire_time": "2026-03-31T02:30:00+02:00", "utc": "2026-03-31T00:30:00Z"},
    ]


def test_json_fire_time_and_utc_name_the_same_instant():
    items = _json_next("--cron", "*/20 * * * *", "--tz", "Asia/Kathmandu", "--after", "2026-01-01T00:00:00Z", "-n", "4")
    assert len(items) == 4
    for item in items:
        assert set(item) <= {"fire_time", "utc", "note"}
        local = datetime.fromisoformat(item["fire_time"])
        assert local.utcoffset() == timedelta(hours=5, minutes=45)
        assert item["utc"].endswith("Z")
        assert local == datetime.fromisoformat(item["utc"].replace("Z", "+00:00"))
        assert "note" not in item


def test_json_count_option_sets_the_number_of_fire_times():
    items = _json_next("--hourly", "0", "--tz", "UTC", "--after", "2026-01-01T00:00:00Z", "--count", "7")
    assert [i["fire_time"] for i in items] == [f"2026-01-01T{h:02d}:00:00+00:00" for h in range(1, 8)]


NOTE_CASES = [
    pytest.param(
        ["--daily", "02:30", "--tz", "America/New_York", "--after", "2026-03-07T12:00:00-05:00"],
        "2026-03-08T03:00:00-04:00",
        "end of the DST gap",
        id="gap",
    ),
    pytest.param(
        ["--cron", "30 1 * * *", "--tz", "America/New_York", "--after", "2026-10-31T12:00:00-04:00"],
        "2026-11-01T01:30:00-04:00",
        "first of two",
        id="fold-fixed-time",
    ),
    pytest.param(
        ["--hourly", "30", "--tz", "Australia/Sydney", "--after", "2026-04-05T02:30:00+11:00"],
        "2026-04-05T02:30:00+10:00",
        "repeated hour",
        id="fold-wildcard",
    ),
    pytest.param(
        [
            "--every",
            "1h",
            "--anchor",
            "2026-10-04T00:30:00+10:30",
            "--tz",
            "Australia/Lord_Howe",
            "--after",
            "2026-10-04T01:30:00+10:30",
        ],
        "2026-10-04T03:00:00+11:00",
        "crosses a DST change",
        id="interval",
    ),
]


@pytest.mark.parametrize(("args", "fire_time", "words"), NOTE_CASES)
def test_json_note_says_how_dst_touched_the_fire_time(args, fire_time, words):
    first = _json_next(*args, "-n", "1")[0]
    assert first["fire_time"] == fire_time
    assert words in first["note"]


def test_table_output_marks_the_fire_times_dst_touched():
    args = [
        "next",
        "--cron",
        "30 1 * * *",
        "--tz",
        "America/New_York",
        "--after",
        "2026-10-31T12:00:00-04:00",
        "-n",
        "2",
    ]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})  # wide enough that no cell wraps
    assert result.exit_code == 0, result.stderr
    assert "first of two 01:30s" in result.stdout
    assert "2026-11-01 01:30:00 -0400" in result.stdout
    assert "2026-11-02 01:30:00 -0500" in result.stdout


# -- bad input ----------------------------------------------------------------------------------

AFTER = ["--after", "2026-03-28T12:00:00+01:00"]
BAD_INPUT = [
    pytest.param(["--cron", "0 25 * * *", "--tz", "UTC"], 1, ["field hour", "'25'"], id="cron-hour-25"),
    pytest.param(["--cron", "60 * * * *", "--tz", "UTC"], 1, ["field minute", "'60'"], id="cron-minute-60"),
    pytest.param(["--cron", "0 0 * * FOO", "--tz", "UTC"], 1, ["field day-of-week", "'FOO'"], id="cron-bad-day-name"),
    pytest.param(["--cron", "0 0 32 * *", "--tz", "UTC"], 1, ["field day-of-month", "'32'"], id="cron-day-32"),
    pytest.param(["--cron", "0 0 30 2 *", "--tz", "UTC"], 1, ["'0 0 30 2 *'", "no day can ever match"], id="30-Feb"),
    pytest.param(["--cron", "0 0 * * * *", "--tz", "UTC"], 1, ["6 fields, not 5"], id="six-fields"),
    pytest.param(["--cron", "H 0 * * *", "--tz", "UTC"], 1, ["field minute", "'H'", "hashed (H)"], id="hashed"),
    pytest.param(["--cron", "0 R * * *", "--tz", "UTC"], 1, ["field hour", "'R'", "random (R)"], id="random"),
    pytest.param(["--daily", "02:30", "--tz", "Europe/Berln"], 1, ["'Europe/Berln'", "Europe/Berlin"], id="zone-typo"),
    pytest.param(["--daily", "24:00", "--tz", "UTC"], 1, ["'24:00'", "hour 24"], id="daily-hour-24"),
    pytest.param(["--daily", "12:60", "--tz", "UTC"], 1, ["'12:60'", "minute 60"], id="daily-minute-60"),
    pytest.param(["--daily", "2pm", "--tz", "UTC"], 1, ["'2pm'", "HH:MM"], id="daily-not-HH:MM"),
    pytest.param(["--hourly", "60", "--tz", "UTC"], 1, ["'60'", "0 to 59"], id="hourly-minute-60"),
    pytest.param(["--every", "0s", "--tz", "UTC"], 1, ["'0s'", "longer than zero"], id="interval-zero"),
    pytest.param(["--every", "PT0S", "--tz", "UTC"], 1, ["'PT0S'", "longer than zero"], id="interval-zero-iso"),
    pytest.param(["--every=-5m", "--tz", "UTC"], 1, ["'-5m'", "positive duration"], id="interval-negative"),
    pytest.param(["--every=-PT5M", "--tz", "UTC"], 1, ["'-PT5M'", "positive duration"], id="interval-negative-iso"),
    pytest.param(["--every", "P1M", "--tz", "UTC"], 1, ["'P1M'", "months"], id="interval-calendar-month"),
    pytest.param(
        ["--daily", "02:30", "--cron", "0 0 * * *", "--tz", "UTC"],
        2,
        ["exactly one of", "--cron", "--daily"],
        id="two-schedules",
    ),
    pytest.param(["--tz", "UTC"], 2, ["exactly one of"], id="no-schedule"),
    pytest.param(
        ["--daily", "02:30", "--anchor", "2026-01-01T00:00:00Z", "--tz", "UTC"],
        2,
        ["--anchor"],
        id="anchor-without-every",
    ),
]


@pytest.mark.parametrize(("args", "exit_code", "words"), BAD_INPUT)
def test_bad_input_is_refused_on_stderr_with_a_nonzero_exit_and_no_traceback(args, exit_code, words):
    result = _next(*args, *AFTER)
    assert result.exit_code == exit_code
    assert result.stderr.startswith("flowyml-sched: error: ")
    for word in words:
        assert word in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr + result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("after", ["2026-03-28T12:00:00", "2026-03-28", "yesterday"])
def test_after_without_an_offset_is_refused(after):
    result = _next("--daily", "02:30", "--tz", "UTC", "--after", after)
    assert result.exit_code == 1
    assert f"invalid --after instant '{after}'" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_anchor_without_an_offset_is_refused():
    result = _next("--every", "1h", "--anchor", "2026-03-28T12:00:00", "--tz", "UTC", *AFTER)
    assert result.exit_code == 1
    assert "invalid --anchor instant" in result.stderr
    assert "Traceback" not in result.stderr


# -- the installed console script, as a real process -----------------------------------------------


def _console_script() -> str:
    beside_python = Path(sys.executable).parent / "flowyml-sched"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("flowyml-sched")
    assert found, "the flowyml-sched console script is not installed"
    return found


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FLOWYML_SCHEDULER_")}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_STATE_HOME=str(tmp_path / "state"))
    return subprocess.run(
        [_console_script(), "next", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )


def test_real_process_prints_json_fire_times(tmp_path):
    done = _run(
        tmp_path,
        "--cron",
        "*/15 * * * *",
        "--tz",
        "America/New_York",
        "--after",
        "2026-11-01T01:40:00-04:00",
        "-n",
        "3",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        {"fire_time": "2026-11-01T01:45:00-04:00", "utc": "2026-11-01T05:45:00Z", "note": "repeated hour, first pass"},
        {"fire_time": "2026-11-01T01:00:00-05:00", "utc": "2026-11-01T06:00:00Z", "note": "repeated hour, second pass"},
        {"fire_time": "2026-11-01T01:15:00-05:00", "utc": "2026-11-01T06:15:00Z", "note": "repeated hour, second pass"},
    ]


def test_real_process_refuses_an_unknown_zone_with_a_suggestion(tmp_path):
    done = _run(tmp_path, "--daily", "02:30", "--tz", "Europe/Berln", "--after", "2026-03-28T12:00:00+01:00")
    assert done.returncode == 1
    assert "did you mean Europe/Berlin" in done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr


def test_real_process_refuses_two_schedules_with_exit_2(tmp_path):
    done = _run(tmp_path, "--hourly", "5", "--every", "1h", "--tz", "UTC", "--after", "2026-03-28T12:00:00Z")
    assert done.returncode == 2
    assert "exactly one of" in done.stderr
    assert "Traceback" not in done.stderr


def test_real_process_refuses_a_bad_cron_field(tmp_path):
    done = _run(tmp_path, "--cron", "0 0 * 13 *", "--tz", "UTC", "--after", "2026-03-28T12:00:00Z")
    assert done.returncode == 1
    assert "field month = '13'" in done.stderr
    assert "Traceback" not in done.stderr


# -- parse_duration, parse_time_of_day, parse_minute --------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("7d", timedelta(days=7)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("PT15M", timedelta(minutes=15)),
        ("P7D", timedelta(days=7)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("pt90s", timedelta(seconds=90)),
    ],
)
def test_parse_duration_reads_short_and_iso_8601_forms(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("P1M", "months"),
        ("P1Y", "years"),
        ("0s", "longer than zero"),
        ("PT0S", "longer than zero"),
        ("-5m", "not a number"),
        ("", "invalid interval ''"),
        ("5 minutes", "not a number"),
        ("1.5h", "not a number"),
        ("P", "ISO 8601"),
    ],
)
def test_parse_duration_refuses_calendar_zero_negative_and_malformed_durations(text, words):
    with pytest.raises(InvalidDuration, match=words):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "hour", "minute"), [("02:30", 2, 30), ("0:05", 0, 5), ("23:59", 23, 59), (" 07:00 ", 7, 0)]
)
def test_parse_time_of_day_reads_hh_mm(text, hour, minute):
    assert parse_time_of_day(text) == DailyTrigger(hour, minute)


@pytest.mark.parametrize("text", ["24:00", "12:60", "2:3", "12", "12:00:00", "ab:cd", "", "-1:00"])
def test_parse_time_of_day_refuses_anything_but_00_00_to_23_59(text):
    with pytest.raises(InvalidTimeOfDay):
        parse_time_of_day(text)


@pytest.mark.parametrize(("text", "minute"), [("15", 15), (":15", 15), ("0", 0), ("59", 59), (":05", 5)])
def test_parse_minute_reads_mm_or_colon_mm(text, minute):
    assert parse_minute(text) == HourlyTrigger(minute)


@pytest.mark.parametrize("text", ["60", "-1", "x", "1.5", "", "::15"])
def test_parse_minute_refuses_anything_but_0_to_59(text):
    with pytest.raises(InvalidMinute):
        parse_minute(text)


# -- cron syntax ----------------------------------------------------------------------------------

WEDNESDAY_NOON = datetime(2026, 3, 4, 12, tzinfo=UTC)


def _utc_fires(expression: str, count: int = 3, after: datetime = WEDNESDAY_NOON) -> list[str]:
    return [f.at.isoformat() for f in fire_times(CronTrigger(expression), ZoneInfo("UTC"), after, count)]


MACROS = [
    ("@yearly", ["2027-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00", "2029-01-01T00:00:00+00:00"]),
    ("@annually", ["2027-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00", "2029-01-01T00:00:00+00:00"]),
    ("@monthly", ["2026-04-01T00:00:00+00:00", "2026-05-01T00:00:00+00:00", "2026-06-01T00:00:00+00:00"]),
    ("@weekly", ["2026-03-08T00:00:00+00:00", "2026-03-15T00:00:00+00:00", "2026-03-22T00:00:00+00:00"]),
    ("@daily", ["2026-03-05T00:00:00+00:00", "2026-03-06T00:00:00+00:00", "2026-03-07T00:00:00+00:00"]),
    ("@midnight", ["2026-03-05T00:00:00+00:00", "2026-03-06T00:00:00+00:00", "2026-03-07T00:00:00+00:00"]),
    ("@hourly", ["2026-03-04T13:00:00+00:00", "2026-03-04T14:00:00+00:00", "2026-03-04T15:00:00+00:00"]),
]


@pytest.mark.parametrize(("macro", "expected"), MACROS)
def test_cron_macro_fires_like_its_five_field_form(macro, expected):
    assert _utc_fires(macro) == expected
    assert _utc_fires(macro.upper()) == expected


def test_hourly_macro_is_a_wildcard_schedule_and_daily_macro_a_fixed_time_one():
    assert compile_cron("@hourly").fixed_time is False
    assert compile_cron("@daily").fixed_time is True
    # So @hourly fires in both passes of Berlin's repeated hour and @daily once.
    berlin = ZoneInfo("Europe/Berlin")
    after = datetime.fromisoformat("2026-10-25T01:30:00+02:00")
    hourly = [f.at.isoformat() for f in fire_times(CronTrigger("@hourly"), berlin, after, 2)]
    assert hourly == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]


@pytest.mark.parametrize("sunday", ["0", "7", "SUN", "sun", "Sun"])
def test_sunday_is_day_of_week_0_or_7_or_sun(sunday):
    assert _utc_fires(f"0 0 * * {sunday}") == [
        "2026-03-08T00:00:00+00:00",
        "2026-03-15T00:00:00+00:00",
        "2026-03-22T00:00:00+00:00",
    ]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 9 * * MON", ["2026-03-09T09:00:00+00:00", "2026-03-16T09:00:00+00:00"]),
        ("0 9 * * mon", ["2026-03-09T09:00:00+00:00", "2026-03-16T09:00:00+00:00"]),
        ("0 9 * * MON-FRI", ["2026-03-05T09:00:00+00:00", "2026-03-06T09:00:00+00:00"]),
        ("0 0 1 JAN *", ["2027-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00"]),
        ("0 0 1 JAN-MAR,DEC *", ["2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"]),
    ],
)
def test_month_and_day_names_are_read_in_any_case(expression, expected):
    assert _utc_fires(expression, len(expected)) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        pytest.param(
            "0 0 L * *",
            ["2026-03-31T00:00:00+00:00", "2026-04-30T00:00:00+00:00", "2026-05-31T00:00:00+00:00"],
            id="L-last-day-of-month",
        ),
        pytest.param(
            "0 9 * * L5",
            ["2026-03-27T09:00:00+00:00", "2026-04-24T09:00:00+00:00", "2026-05-29T09:00:00+00:00"],
            id="L5-last-Friday",
        ),
        pytest.param(
            "0 9 15W * *",
            ["2026-03-16T09:00:00+00:00", "2026-04-15T09:00:00+00:00", "2026-05-15T09:00:00+00:00"],
            id="15W-nearest-weekday-Sunday-15-March-moves-to-Monday",
        ),
        pytest.param(
            "0 9 * * 1#2",
            ["2026-03-09T09:00:00+00:00", "2026-04-13T09:00:00+00:00", "2026-05-11T09:00:00+00:00"],
            id="1#2-second-Monday",
        ),
        pytest.param(
            "0 9 * * MON#2",
            ["2026-03-09T09:00:00+00:00", "2026-04-13T09:00:00+00:00", "2026-05-11T09:00:00+00:00"],
            id="MON#2-second-Monday",
        ),
    ],
)
def test_l_w_and_hash_extensions(expression, expected):
    assert _utc_fires(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        pytest.param("0 17-17 * * *", ["2026-03-04T17:00:00+00:00", "2026-03-05T17:00:00+00:00"], id="17-17"),
        pytest.param("0 0 * * 3-3", ["2026-03-11T00:00:00+00:00", "2026-03-18T00:00:00+00:00"], id="3-3"),
        pytest.param("0 0 * * WED-WED", ["2026-03-11T00:00:00+00:00", "2026-03-18T00:00:00+00:00"], id="WED-WED"),
        pytest.param("0 0 1 APR-4/2 *", ["2026-04-01T00:00:00+00:00", "2027-04-01T00:00:00+00:00"], id="APR-4/2"),
    ],
)
def test_a_range_whose_ends_are_equal_means_that_one_value(expression, expected):
    # cron(5): "17-17" is hour 17. (croniter alone reads an equal range as the whole field.)
    assert _utc_fires(expression, len(expected)) == expected


def test_day_of_week_0_to_7_is_the_whole_week():
    assert _utc_fires("0 0 * * 0-7", 7) == [f"2026-03-{d:02d}T00:00:00+00:00" for d in range(5, 12)]


@pytest.mark.parametrize(
    ("expression", "field", "value"),
    [
        ("R 0 * * *", "minute", "R"),
        ("H 0 * * *", "minute", "H"),
        ("0 H(0-5) * * *", "hour", "H(0-5)"),
        ("0 0 * * R", "day-of-week", "R"),
        ("H/15 * * * *", "minute", "H/15"),
    ],
)
def test_random_and_hashed_values_are_refused_naming_the_field(expression, field, value):
    with pytest.raises(InvalidCronExpression, match=r"random \(R\) and hashed \(H\)") as caught:
        compile_cron(expression)
    assert (caught.value.field, caught.value.value) == (field, value)


@pytest.mark.parametrize("expression", ["0 0 0 * * *", "*/5 * * * * *", "0 0 12 * * ? 2026", "0 0 * *", ""])
def test_anything_but_five_fields_is_refused(expression):
    with pytest.raises(InvalidCronExpression, match=r"fields, not 5|empty"):
        compile_cron(expression)
