"""Editing a schedules file in place: only the lines of the edit change, failures change nothing."""

from __future__ import annotations

import difflib
import os
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowyml_sched.errors import InvalidSpec, ScheduleExists, ScheduleNotFound, SpecFileError
from flowyml_sched.model import NAME_PATTERN, PIPELINE_PATTERN, CatchUp, Policy, Schedule
from flowyml_sched.spec import files as spec_files
from flowyml_sched.spec import load_spec
from flowyml_sched.triggers import CronTrigger, DailyTrigger, HourlyTrigger, IntervalTrigger
from flowyml_sched.yamledit import add_schedule, edit_schedule, remove_schedule, set_enabled

UTC = timezone.utc

COMMENTED = """\
# Team schedules. Keep this header.
version: 1   # format version

defaults:
  timezone: Europe/Berlin   # our office
  catchup: latest

schedules:
  # --- reports ---------------------------------------------------------
  - name: daily-summary          # the one everybody reads
    pipeline: daily_summary
    daily: '06:30'               # single quotes on purpose
    params: {input: "sales.csv", limit: 10}
    tags: [reports]

  # Sync from the warehouse.
  - name: hourly-sync
    pipeline: etl.sync:run
    hourly: 15
    params:
      tables:
        - orders
        - customers   # the big one
    retries: {max: 2, backoff: 1m}

  # Polls the API.
  - name: poll-api
    pipeline: poll_api
    every: 15m
    anchor: "2026-01-01T00:00:00Z"
    description: >-
      Polls the partner API
      and stores the answers.

# --- end of schedules: nothing below this line is a schedule ---
"""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    file = tmp_path / "schedules.yaml"
    file.write_text(COMMENTED, encoding="utf-8")
    return file


def diff(before: str, after: str) -> tuple[list[str], list[str]]:
    """Lines removed and lines added, in order."""
    removed, added = [], []
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def comment_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "#" in line]


def comments(text: str) -> list[str]:
    return [line.split("#", 1)[1] for line in comment_lines(text)]


def assert_unchanged(path: Path, before: bytes) -> None:
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name], "a temporary file was left behind"


# -- add -----------------------------------------------------------------------------------------


def test_add_appends_after_the_last_schedule_and_before_the_trailing_comment(path):
    schedule = Schedule(
        "nightly",
        "reports:nightly",
        CronTrigger("30 2 * * *"),
        timezone="Europe/Berlin",  # the file's default: not written
        params={"yes": "no"},
        tags=("b", "a"),
        policy=Policy(catchup=CatchUp.all, timeout=timedelta(minutes=30), retries=1),
    )
    spec = add_schedule(path, schedule)
    after = path.read_text()
    assert diff(COMMENTED, after) == (
        [],
        [
            "  - name: nightly",
            "    pipeline: reports:nightly",
            '    cron: "30 2 * * *"',
            "    params:",
            '      "yes": "no"',
            "    tags: [a, b]",
            "    catchup: all",
            "    timeout: 30m",
            "    retries: {max: 1}",
        ],
    )
    assert after.index("stores the answers.") < after.index("name: nightly") < after.index("# --- end")
    assert comment_lines(after) == comment_lines(COMMENTED)
    assert spec.names == ["daily-summary", "hourly-sync", "poll-api", "nightly"]
    assert spec.get("nightly").params == {"yes": "no"}


def test_add_writes_the_zone_when_it_differs_from_the_default_and_always_the_anchor(path):
    every = IntervalTrigger(timedelta(minutes=5), datetime(2026, 1, 1, 12, tzinfo=UTC))
    add_schedule(path, Schedule("utc-job", "p", every, timezone="UTC"))
    removed, added = diff(COMMENTED, path.read_text())
    assert removed == []
    assert added == [
        "  - name: utc-job",
        "    pipeline: p",
        "    every: 5m",
        '    anchor: "2026-01-01T12:00:00Z"',
        "    timezone: UTC",
    ]


def test_add_then_remove_gives_back_the_same_bytes(path):
    add_schedule(path, Schedule("temp", "p", HourlyTrigger(1)))
    remove_schedule(path, "temp")
    assert path.read_text() == COMMENTED


def test_add_creates_a_missing_file_with_version_1(tmp_path):
    path = tmp_path / "new.yaml"
    add_schedule(path, Schedule("first", "p", DailyTrigger(7, 0)))
    text = path.read_text()
    assert "version: 1\n" in text
    assert load_spec(path).get("first").trigger == DailyTrigger(7, 0)


@pytest.mark.parametrize("empty", ["schedules:\n", "schedules: []\n", "schedules: []  # none yet\n", "schedules: ~\n"])
def test_add_to_an_empty_list(tmp_path, empty):
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\n" + empty + "# tail\n")
    add_schedule(path, Schedule("a", "p", HourlyTrigger(1)))
    text = path.read_text()
    assert load_spec(path).names == ["a"]
    assert text.startswith("version: 1\nschedules:") and text.endswith(
        "  - name: a\n    pipeline: p\n    hourly: 1\n    timezone: UTC\n# tail\n"
    )
    assert comment_lines(text) == comment_lines(path.read_text())


def test_add_follows_the_files_list_indentation(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nschedules:\n- name: a\n  pipeline: p\n  hourly: 1\n")
    add_schedule(path, Schedule("b", "p", HourlyTrigger(2)))
    assert path.read_text().endswith("  hourly: 1\n- name: b\n  pipeline: p\n  hourly: 2\n  timezone: UTC\n")


def test_add_keeps_crlf_line_ends_and_a_missing_final_newline(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"version: 1\r\nschedules:\r\n  - name: a\r\n    pipeline: p\r\n    hourly: 1")
    add_schedule(path, Schedule("b", "p", HourlyTrigger(2)))
    data = path.read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n") and load_spec(path).names == ["a", "b"]


def test_add_refuses_a_taken_name_and_leaves_the_file_alone(path):
    before = path.read_bytes()
    with pytest.raises(ScheduleExists, match="'poll-api' already exists"):
        add_schedule(path, Schedule("poll-api", "p", HourlyTrigger(1)))
    assert_unchanged(path, before)


# -- edit ----------------------------------------------------------------------------------------


def test_edit_replaces_values_in_place_and_adds_keys_in_their_place(path):
    edit_schedule(path, "daily-summary", {"daily": "07:15", "timeout": timedelta(minutes=45), "description": "New"})
    after = path.read_text()
    removed, added = diff(COMMENTED, after)
    assert removed == ["    daily: '06:30'               # single quotes on purpose"]
    assert added == [
        "    daily: '07:15'               # single quotes on purpose",
        "    description: New",
        "    timeout: 45m",
    ]
    lines = after.splitlines()
    assert lines.index("    description: New") == lines.index('    params: {input: "sales.csv", limit: 10}') + 1
    assert comments(after) == comments(COMMENTED)  # the edited line keeps its comment
    schedule = load_spec(path).get("daily-summary")
    assert schedule.trigger == DailyTrigger(7, 15) and schedule.policy.timeout == timedelta(minutes=45)


def test_edit_of_a_block_value_keeps_the_comments_after_it(path):
    edit_schedule(path, "hourly-sync", {"params": {"tables": ["orders"]}, "retries": {"max": 5}})
    after = path.read_text()
    assert "# Polls the API." in after and "# Sync from the warehouse." in after
    schedule = load_spec(path).get("hourly-sync")
    assert schedule.params == {"tables": ["orders"]}
    assert (schedule.policy.retries, schedule.policy.retry_backoff) == (5, timedelta(minutes=1))  # merged


def test_changing_the_trigger_replaces_the_old_key_and_drops_the_anchor(path):
    edit_schedule(path, "poll-api", {"cron": "*/5 * * * *"})
    removed, added = diff(COMMENTED, path.read_text())
    assert removed == ["    every: 15m", '    anchor: "2026-01-01T00:00:00Z"']
    assert added == ['    cron: "*/5 * * * *"']
    edit_schedule(path, "hourly-sync", {"every": "10m"})
    spec = load_spec(path)
    assert spec.get("hourly-sync").trigger.every == timedelta(minutes=10)
    assert spec.explicit_anchor["hourly-sync"] is False


def test_changing_an_interval_keeps_its_anchor(path):
    edit_schedule(path, "poll-api", {"every": "1h"})
    trigger = load_spec(path).get("poll-api").trigger
    assert trigger == IntervalTrigger(timedelta(hours=1), datetime(2026, 1, 1, tzinfo=UTC))


def test_none_removes_a_key_and_the_name_can_change(path):
    edit_schedule(path, "daily-summary", {"tags": None, "name": "morning-summary"})
    removed, added = diff(COMMENTED, path.read_text())
    assert removed == ["  - name: daily-summary          # the one everybody reads", "    tags: [reports]"]
    assert added == ["  - name: morning-summary          # the one everybody reads"]
    with pytest.raises(ScheduleExists):
        edit_schedule(path, "morning-summary", {"name": "poll-api"})


def test_an_edit_with_a_bad_value_changes_nothing(path):
    before = path.read_bytes()
    with pytest.raises(InvalidSpec, match="unknown timezone 'Mars/Base'"):
        edit_schedule(path, "poll-api", {"timezone": "Mars/Base"})
    with pytest.raises(InvalidSpec, match="unknown key 'tz'; did you mean 'timezone'"):
        edit_schedule(path, "poll-api", {"tz": "UTC"})
    with pytest.raises(InvalidSpec, match="at most one of cron, daily, hourly or every"):
        edit_schedule(path, "poll-api", {"daily": "01:00", "hourly": 3})
    with pytest.raises(InvalidSpec, match="anchor applies only to 'every' schedules"):
        edit_schedule(path, "daily-summary", {"anchor": "2026-01-01T00:00:00Z"})
    assert_unchanged(path, before)


def test_unknown_names_are_reported_with_the_file(path):
    before = path.read_bytes()
    for call in (
        lambda: edit_schedule(path, "nope", {"hourly": 1}),
        lambda: set_enabled(path, "nope", False),
        lambda: remove_schedule(path, "nope"),
    ):
        with pytest.raises(ScheduleNotFound, match=f"no schedule named 'nope' in {path}"):
            call()
    assert_unchanged(path, before)


# -- pause and resume ----------------------------------------------------------------------------


def test_pause_adds_two_lines_and_resume_takes_them_away(path):
    set_enabled(path, "hourly-sync", False, "warehouse migration")
    removed, added = diff(COMMENTED, path.read_text())
    assert removed == []
    assert added == ["    enabled: false", "    pause_note: warehouse migration"]
    schedule = load_spec(path).get("hourly-sync")
    assert (schedule.enabled, schedule.pause_note) == (False, "warehouse migration")
    set_enabled(path, "hourly-sync", True)
    assert path.read_text() == COMMENTED


def test_pausing_the_last_schedule_keeps_the_trailing_comment_below_it(path):
    set_enabled(path, "poll-api", False, None)
    after = path.read_text()
    assert after.index("and stores the answers.") < after.index("enabled: false") < after.index("# --- end")
    set_enabled(path, "poll-api", True)
    assert path.read_text() == COMMENTED


def test_resume_writes_enabled_true_when_the_file_pauses_by_default(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "version: 1\ndefaults:\n  enabled: false\nschedules:\n  - name: a\n    pipeline: p\n    hourly: 1\n"
    )
    set_enabled(path, "a", True)
    assert load_spec(path).get("a").enabled is True
    assert path.read_text().endswith("    hourly: 1\n    enabled: true\n")


# -- remove --------------------------------------------------------------------------------------


def test_remove_takes_only_the_schedules_lines(path):
    remove_schedule(path, "hourly-sync")
    after = path.read_text()
    removed, added = diff(COMMENTED, after)
    assert added == []
    assert removed == [
        "  # Sync from the warehouse.",
        "  - name: hourly-sync",
        "    pipeline: etl.sync:run",
        "    hourly: 15",
        "    params:",
        "      tables:",
        "        - orders",
        "        - customers   # the big one",
        "    retries: {max: 2, backoff: 1m}",
        "",
    ]
    assert load_spec(path).names == ["daily-summary", "poll-api"]
    assert "    tags: [reports]\n\n  # Polls the API.\n  - name: poll-api\n" in after


def test_remove_keeps_a_comment_that_heads_the_list(path):
    remove_schedule(path, "daily-summary")
    after = path.read_text()
    assert "schedules:\n  # --- reports ----" in after and "# the one everybody reads" not in after
    assert "\n  # Sync from the warehouse.\n  - name: hourly-sync\n" in after


def test_removing_the_last_schedule_leaves_an_empty_list(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nschedules:  # all of them\n  - name: a\n    pipeline: p\n    hourly: 1\n# end\n")
    remove_schedule(path, "a")
    assert path.read_text() == "version: 1\nschedules: []  # all of them\n# end\n"
    assert load_spec(path).schedules == ()


# -- failures leave the file alone -----------------------------------------------------------------


def test_a_file_with_problems_is_not_edited(path):
    broken = COMMENTED.replace("hourly: 15", "hourly: 75")
    path.write_text(broken)
    before = path.read_bytes()
    with pytest.raises(InvalidSpec, match="invalid minute past the hour '75'"):
        set_enabled(path, "daily-summary", False)
    assert_unchanged(path, before)


def test_a_failed_write_leaves_the_file_and_no_temporary_file(path, monkeypatch):
    before = path.read_bytes()

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spec_files.os, "replace", refuse)
    with pytest.raises(SpecFileError, match="No space left on device"):
        set_enabled(path, "poll-api", False, "disk full")
    assert_unchanged(path, before)


def test_a_flow_style_list_is_refused_untouched(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nschedules: [{name: a, pipeline: p, hourly: 1}]\n")
    before = path.read_bytes()
    with pytest.raises(SpecFileError, match="flow style"):
        add_schedule(path, Schedule("b", "p", HourlyTrigger(2)))
    with pytest.raises(SpecFileError, match="flow style"):
        remove_schedule(path, "a")
    assert_unchanged(path, before)


def test_the_files_mode_is_kept(path):
    os.chmod(path, 0o600)
    set_enabled(path, "poll-api", False)
    assert os.stat(path).st_mode & 0o777 == 0o600


# -- any schedule, any sequence ------------------------------------------------------------------

NAMES = st.from_regex(NAME_PATTERN, fullmatch=True).filter(
    lambda n: n not in {"daily-summary", "hourly-sync", "poll-api"}
)
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)  # no database holds a NUL
SCHEDULES = st.builds(
    Schedule,
    name=NAMES,
    pipeline=st.from_regex(PIPELINE_PATTERN, fullmatch=True),
    trigger=st.one_of(
        st.builds(DailyTrigger, st.integers(0, 23), st.integers(0, 59)),
        st.builds(HourlyTrigger, st.integers(0, 59)),
        st.sampled_from(["* * * * *", "0 9 * * MON-FRI", "@weekly"]).map(CronTrigger),
        st.builds(
            IntervalTrigger,
            st.integers(1, 10**7).map(lambda s: timedelta(seconds=s)),
            st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
        ),
    ),
    timezone=st.sampled_from(["Europe/Berlin", "UTC", "Asia/Kathmandu"]),
    params=st.dictionaries(
        TEXT,
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
        max_size=3,
    ),
    description=TEXT,
    tags=st.lists(st.from_regex(NAME_PATTERN, fullmatch=True), max_size=2).map(tuple),
    enabled=st.booleans(),
    pause_note=st.none() | TEXT,
    policy=st.builds(Policy, catchup=st.sampled_from(CatchUp), retries=st.integers(0, 100)),
)


@settings(max_examples=30, deadline=None)
@given(
    schedules=st.lists(SCHEDULES, max_size=3, unique_by=lambda s: s.name), pauses=st.lists(st.booleans(), max_size=4)
)
def test_adding_any_schedules_and_removing_them_restores_the_file(schedules, pauses):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "schedules.yaml"
        path.write_text(COMMENTED, encoding="utf-8")
        for schedule in schedules:
            add_schedule(path, schedule)  # checks that the entry reads back as this schedule
        spec = load_spec(path)
        assert spec.names == ["daily-summary", "hourly-sync", "poll-api", *(s.name for s in schedules)]
        after = path.read_text().splitlines()
        positions = [after.index(line) for line in comment_lines(COMMENTED)]
        assert positions == sorted(positions)  # every comment kept, in order
        for paused in pauses:
            set_enabled(path, "hourly-sync", not paused, "note: with a colon" if paused else None)
            assert load_spec(path).get("hourly-sync").enabled is not paused
        set_enabled(path, "hourly-sync", True)
        for schedule in reversed(schedules):
            remove_schedule(path, schedule.name)
        assert path.read_text() == COMMENTED
