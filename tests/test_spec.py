"""The YAML schedules file: every problem with its line, safe loading, round trips, plans."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml as pyyaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowyml_sched.errors import InvalidExclusion, InvalidSpec, SchedulerError, SpecFileError, SpecProblem
from flowyml_sched.exclusions import DateRange, Exclusions, HolidayCalendar, OnExcluded
from flowyml_sched.model import (
    MAX_PIPELINE_LENGTH,
    NAME_PATTERN,
    PIPELINE_PATTERN,
    CatchUp,
    Overlap,
    Policy,
    Schedule,
    check_exclusions_fit,
)
from flowyml_sched.spec import (
    IMPLICIT_ANCHOR,
    SpecFile,
    changed_fields,
    dump_spec,
    load_spec,
    parse_spec,
    plan,
    save_spec,
    write_text_atomic,
)
from flowyml_sched.spec.reading import _Reader
from flowyml_sched.triggers import CronTrigger, DailyTrigger, HourlyTrigger, IntervalTrigger

ROOT = Path(__file__).resolve().parent.parent
UTC = timezone.utc
PATH = "schedules.yaml"

BRIEF_EXAMPLE = """\
version: 1
defaults:            # optional
  timezone: Europe/Berlin
  catchup: latest
schedules:
  - name: daily-summary
    pipeline: daily_summary
    daily: "06:30"
    timezone: Europe/Berlin
    params: {input: sales.csv}
    description: Summarise yesterday's sales
    tags: [reports]
    enabled: false
    pause_note: waiting for upstream fix
    catchup: latest
    max_catchup: 100
    misfire_grace: 10m
    overlap: skip
    timeout: 30m
    retries: {max: 2, backoff: 1m}
  - name: hourly-sync
    pipeline: etl.sync:run
    hourly: 15
  - name: poll-api
    pipeline: poll_api
    every: 15m
    anchor: "2026-01-01T00:00:00Z"
  - name: weekday-report
    pipeline: reports:weekday
    cron: "0 9 * * MON-FRI"
"""


def problems_of(text: str) -> list[SpecProblem]:
    with pytest.raises(InvalidSpec) as caught:
        parse_spec(text, PATH)
    assert all(isinstance(p, SpecProblem) for p in caught.value.problems)
    return caught.value.problems


def only_problem(text: str) -> SpecProblem:
    problems = problems_of(text)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def one_schedule(body: str, header: str = "") -> str:
    """A file with one schedule whose keys start on line 4 (``header`` goes before ``schedules:``)."""
    lines = header.count("\n")
    text = f"version: 1\n{header}schedules:\n  - name: job\n" + body
    assert text.splitlines()[3 + lines].strip() == body.splitlines()[0].strip()
    return text


# -- reading a good file -----------------------------------------------------------------------


def test_the_documented_example_reads_into_schedules():
    spec = parse_spec(BRIEF_EXAMPLE, PATH)
    assert spec.names == ["daily-summary", "hourly-sync", "poll-api", "weekday-report"]
    summary = spec.schedules[0]
    assert summary == Schedule(
        name="daily-summary",
        pipeline="daily_summary",
        trigger=DailyTrigger(6, 30),
        timezone="Europe/Berlin",
        params={"input": "sales.csv"},
        description="Summarise yesterday's sales",
        tags=("reports",),
        enabled=False,
        pause_note="waiting for upstream fix",
        policy=Policy(
            catchup=CatchUp.latest,
            max_catchup=100,
            misfire_grace=timedelta(minutes=10),
            overlap=Overlap.skip,
            timeout=timedelta(minutes=30),
            retries=2,
            retry_backoff=timedelta(minutes=1),
        ),
        source=PATH,
    )
    hourly, poll, weekday = spec.schedules[1:]
    assert hourly.trigger == HourlyTrigger(15) and hourly.timezone == "Europe/Berlin"  # from defaults
    assert poll.trigger == IntervalTrigger(timedelta(minutes=15), datetime(2026, 1, 1, tzinfo=UTC))
    assert weekday.trigger == CronTrigger("0 9 * * MON-FRI")
    assert spec.lines == {"daily-summary": 6, "hourly-sync": 21, "poll-api": 24, "weekday-report": 28}
    assert spec.field_lines["poll-api"] == {"name": 24, "pipeline": 25, "every": 26, "anchor": 27}
    assert spec.explicit_anchor == {"poll-api": True}
    assert spec.defaults == {"timezone": "Europe/Berlin", "catchup": CatchUp.latest}
    assert all(s.source == PATH for s in spec.schedules)
    assert spec.warnings == ()


_SAMPLE_FILES = (
    "version: 1\nschedules:\n  - name: a\n    pipeline: p:q\n    every: 1h\n    params: {x: 1, y: [a, b]}\n",
    "version: 1\ndefaults:\n  timezone: UTC\nschedules:\n  - name: b\n    pipeline: p:q\n    cron: '*/5 * * * *'\n"
    "    description: a note\n    retries:\n      max: 2\n    tags: [x]\n",
    'version: 1\nschedules: [{name: c, pipeline: "p:q", daily: "06:30", enabled: false, pause_note: n}]\n',
)
_PIECES = (
    "\t",
    " ",
    "  ",
    "\n",
    "\r\n",
    "\r",
    ":",
    ": ",
    "- ",
    "#",
    "'",
    '"',
    "[",
    "]",
    "{",
    "}",
    ",",
    "*",
    "&a ",
    "*a",
    "!",
    "!!str ",
    "?",
    "|",
    ">",
    "%YAML 1.1\n",
    "---",
    "\n...\n",
    "\u2028",
    "\x85",
    "\ufeff",
    "\\",
    "~",
    "null",
    "yes",
    "0o17",
    "017",
    "1:30",
    "1_0",
    ".inf",
    "\x7f",
    "\x00",
    "\xa0",
    "\ufffe",
    "\ud800",
    "é",
    "<<: ",
    "@",
    "`",
    "2026-01-01",
    "\\/",
    "\\x41",
    "\\N",
)


def _read_as(text: str, slowly: bool) -> str:
    """What parse_spec makes of ``text`` (the SpecFile or the problems, as text), composing
    by libyaml where it may (as parse_spec does) or by ruamel.yaml alone."""
    reader = _Reader(PATH)
    if slowly:
        reader.compose = reader.compose_slowly  # type: ignore[method-assign]
    try:
        return repr(reader.read(text))
    except InvalidSpec as exc:
        return "\n".join(map(str, exc.problems))
    except RecursionError:
        return "too deep"


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_libyaml_and_ruamel_yaml_read_every_file_alike(data: st.DataObject) -> None:
    text = data.draw(st.sampled_from(_SAMPLE_FILES))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        if data.draw(st.booleans()):
            text = text[:at] + data.draw(st.sampled_from(_PIECES)) + text[at:]
        else:
            text = text[:at] + text[at + data.draw(st.integers(1, 3)) :]
    assert _read_as(text, slowly=False) == _read_as(text, slowly=True)


def test_yaml_1_2_is_read_unless_the_file_says_yaml_1_1_and_an_anchor_may_be_defined_again():
    body = "    pipeline: p:q\n    daily: '06:00'\n    description: &text yes\n    tags: [&text b, *text]\n"
    (schedule,) = parse_spec(one_schedule(body), PATH).schedules
    assert schedule.description == "yes" and schedule.tags == ("b",)  # *text: the later anchor
    paused = one_schedule("    pipeline: p:q\n    daily: '06:00'\n    enabled: no\n")
    (problem,) = problems_of(paused)  # YAML 1.2: no is text
    assert problem.line == 6 and "enabled" in problem.message
    (schedule,) = parse_spec("%YAML 1.1\n---\n" + paused, PATH).schedules  # YAML 1.1: no is false
    assert schedule.enabled is False
    (unknown,) = problems_of("%YAML 1.3\n---\nversion: 1\nschedules: []\n")
    assert unknown.message == (
        "malformed YAML: version minor part can only be 2 or 1, got (1, 3): this reader reads YAML 1.1 and 1.2"
    )


def test_an_interval_without_anchor_is_marked_and_holds_the_placeholder():
    spec = parse_spec(one_schedule("    pipeline: p\n    every: 90s\n"), PATH)
    assert spec.explicit_anchor == {"job": False}
    assert spec.schedules[0].trigger == IntervalTrigger(timedelta(seconds=90), IMPLICIT_ANCHOR)


def test_defaults_apply_unless_a_schedule_sets_its_own_and_retries_merge_by_key():
    text = """\
version: 1
defaults:
  pipeline: shared:run
  timezone: Asia/Tokyo
  tags: [team-a]
  retries: {max: 3, backoff: 2m}
  misfire_grace: 5m
schedules:
  - name: a
    hourly: 5
  - name: b
    pipeline: own:run
    daily: "23:59"
    timezone: UTC
    tags: []
    retries: {max: 1}
    misfire_grace: null
"""
    a, b = parse_spec(text, PATH).schedules
    assert (a.pipeline, a.timezone, a.tags) == ("shared:run", "Asia/Tokyo", ("team-a",))
    assert (a.policy.retries, a.policy.retry_backoff, a.policy.misfire_grace) == (
        3,
        timedelta(minutes=2),
        timedelta(minutes=5),
    )
    assert (b.pipeline, b.timezone, b.tags) == ("own:run", "UTC", ())
    assert (b.policy.retries, b.policy.retry_backoff, b.policy.misfire_grace) == (1, timedelta(minutes=2), None)


def test_values_are_read_as_written():
    text = one_schedule(
        "    pipeline: p\n"
        "    daily: 12:30\n"  # YAML 1.1 would read 750 (base 60)
        "    params: {flag: no, on: off, when: 2026-01-01, n: 0x10, f: 1e3, nothing: null}\n"
        "    retries: 2\n"
        "    description:\n"
    )
    schedule = parse_spec(text, PATH).schedules[0]
    assert schedule.trigger == DailyTrigger(12, 30)
    assert schedule.params == {"flag": "no", "on": "off", "when": "2026-01-01", "n": 16, "f": 1000.0, "nothing": None}
    assert schedule.policy.retries == 2 and schedule.description == ""


def test_hourly_accepts_a_colon_and_backoff_accepts_zero():
    schedule = parse_spec(
        one_schedule("    pipeline: p\n    hourly: :07\n    retries: {backoff: 0s}\n"), PATH
    ).schedules[0]
    assert schedule.trigger == HourlyTrigger(7)
    assert schedule.policy.retry_backoff == timedelta(0)


def test_pause_note_on_an_enabled_schedule_is_a_warning_not_a_problem():
    spec = parse_spec(one_schedule("    pipeline: p\n    hourly: 1\n    pause_note: why\n"), PATH)
    assert [str(w) for w in spec.warnings] == [
        f"{PATH}:6: schedule 'job': pause_note has no effect while the schedule is enabled"
    ]


def test_an_empty_schedules_list_is_a_valid_file():
    assert parse_spec("version: 1\nschedules: []\n", PATH).schedules == ()
    assert parse_spec("version: 1\nschedules:\n", PATH).schedules == ()


# -- every kind of problem, with its line --------------------------------------------------------

# fmt: off
CASES = [
    # (id, file text, line, schedule, part of the message)
    ('unknown key', one_schedule('    pipelin: p\n    hourly: 1\n'), 4, 'job', "unknown key 'pipelin'; did you mean 'pipeline'?"),
    ('unknown alias', one_schedule('    pipeline: p\n    hourly: 1\n    tz: UTC\n'), 6, 'job', "did you mean 'timezone'?"),
    ('unknown top key', 'version: 1\nschedules: []\nschedule: []\n', 3, None, "unknown key 'schedule'; did you mean 'schedules'?"),
    ('unknown default', 'version: 1\ndefaults:\n  timzone: UTC\nschedules: []\n', 3, None, "defaults: unknown key 'timzone'; did you mean 'timezone'?"),
    ('trigger in defaults', "version: 1\ndefaults:\n  daily: '01:00'\nschedules: []\n", 3, None, "'daily' cannot be a default"),
    ('bad default pipeline', 'version: 1\ndefaults:\n  pipeline: "x y"\nschedules:\n  - name: a\n    hourly: 1\n', 3, None, "defaults: invalid pipeline 'x y'"),
    ('unknown retries key', one_schedule('    pipeline: p\n    hourly: 1\n    retries: {max: 1, backof: 1m}\n'), 6, 'job', "unknown key 'backof' in retries; did you mean 'backoff'?"),
    ('missing pipeline', one_schedule('    hourly: 1\n'), 3, 'job', 'no pipeline'),
    ('no trigger', one_schedule('    pipeline: p\n'), 3, 'job', 'no trigger: give exactly one of cron, daily, hourly or every'),
    ('two triggers', one_schedule("    pipeline: p\n    hourly: 1\n    daily: '01:00'\n"), 6, 'job', 'more than one trigger, hourly (line 5) and daily (line 6)'),
    ('bad cron', one_schedule("    pipeline: p\n    cron: '61 * * * *'\n"), 5, 'job', "invalid cron expression '61 * * * *' (field minute"),
    ('impossible cron', one_schedule("    pipeline: p\n    cron: '0 0 30 2 *'\n"), 5, 'job', 'no day can ever match it'),
    ('cron with 6 fields', one_schedule("    pipeline: p\n    cron: '0 0 * * * *'\n"), 5, 'job', 'it has 6 fields, not 5'),
    ('bad daily', one_schedule("    pipeline: p\n    daily: '24:00'\n"), 5, 'job', "invalid daily time '24:00': hour 24 is past 23"),
    ('bad hourly', one_schedule('    pipeline: p\n    hourly: 60\n'), 5, 'job', "invalid minute past the hour '60'"),
    ('bad every', one_schedule('    pipeline: p\n    every: 1y\n'), 5, 'job', "invalid interval '1y'"),
    ('calendar every', one_schedule('    pipeline: p\n    every: P1M\n'), 5, 'job', 'years and months have no fixed length'),
    ('fractional every', one_schedule('    pipeline: p\n    every: PT0.5S\n'), 5, 'job', 'durations are whole seconds'),
    ('naive anchor', one_schedule("    pipeline: p\n    every: 1h\n    anchor: '2026-01-01T00:00:00'\n"), 6, 'job', 'it has no UTC offset'),
    ('anchor without every', one_schedule("    pipeline: p\n    hourly: 1\n    anchor: '2026-01-01T00:00:00Z'\n"), 6, 'job', "anchor applies only to 'every' schedules"),
    ('bad zone', one_schedule('    pipeline: p\n    hourly: 1\n    timezone: Europe/Berln\n'), 6, 'job', "unknown timezone 'Europe/Berln'; did you mean Europe/Berlin"),
    ('bad name', "version: 1\nschedules:\n  - name: 'no spaces'\n    pipeline: p\n    hourly: 1\n", 3, 'no spaces', "invalid schedule name 'no spaces'"),
    ('bad pipeline', one_schedule("    pipeline: 'a:b:c'\n    hourly: 1\n"), 4, 'job', "invalid pipeline 'a:b:c'"),
    ('bad catchup', one_schedule('    pipeline: p\n    hourly: 1\n    catchup: lates\n'), 6, 'job', "invalid catchup 'lates': expected one of latest, none, all; did you mean 'latest'?"),
    ('bad overlap', one_schedule('    pipeline: p\n    hourly: 1\n    overlap: wait\n'), 6, 'job', "invalid overlap 'wait': expected one of skip, queue, allow, replace"),
    ('max_catchup range', one_schedule('    pipeline: p\n    hourly: 1\n    max_catchup: 0\n'), 6, 'job', 'invalid max_catchup 0: expected a whole number from 1 to 100000'),
    ('retries range', one_schedule('    pipeline: p\n    hourly: 1\n    retries: 101\n'), 6, 'job', 'invalid retries 101'),
    ('bad timeout', one_schedule('    pipeline: p\n    hourly: 1\n    timeout: 0s\n'), 6, 'job', "timeout: invalid interval '0s': it must be longer than zero"),
    ('bad misfire', one_schedule('    pipeline: p\n    hourly: 1\n    misfire_grace: soon\n'), 6, 'job', "misfire_grace: invalid interval 'soon'"),
    ('bad backoff', one_schedule('    pipeline: p\n    hourly: 1\n    retries: {backoff: -1m}\n'), 6, 'job', "retries backoff: invalid interval '-1m'"),
    ('params a list', one_schedule('    pipeline: p\n    hourly: 1\n    params: [a, b]\n'), 6, 'job', 'params must be a mapping of names to values'),
    ('params infinity', one_schedule('    pipeline: p\n    hourly: 1\n    params:\n      x: .inf\n'), 7, 'job', 'params.x is .inf, which JSON cannot hold'),
    ('params null key', one_schedule('    pipeline: p\n    hourly: 1\n    params: {~: 1}\n'), 6, 'job', 'keys in params must be text'),
    ('tags a string', one_schedule('    pipeline: p\n    hourly: 1\n    tags: reports\n'), 6, 'job', "tags must be a list such as [reports, nightly], not 'reports'"),
    ('bad tag', one_schedule('    pipeline: p\n    hourly: 1\n    tags:\n      - ok\n      - not ok\n'), 8, 'job', "invalid tag 'not ok'"),
    ('enabled yes', one_schedule('    pipeline: p\n    hourly: 1\n    enabled: yes\n'), 6, 'job', "enabled must be true or false, not 'yes'"),
    ('max_catchup text', one_schedule('    pipeline: p\n    hourly: 1\n    max_catchup: many\n'), 6, 'job', "max_catchup must be a whole number, not 'many'"),
    ('pipeline a mapping', one_schedule('    pipeline: {a: b}\n    hourly: 1\n'), 4, 'job', 'pipeline must be text, not a mapping'),
    ('empty cron', one_schedule('    pipeline: p\n    cron:\n'), 5, 'job', 'cron has no value'),
    ('duplicate key', one_schedule('    pipeline: p\n    hourly: 1\n    pipeline: q\n'), 6, 'job', "the key 'pipeline' is given twice (first on line 4)"),
    ('schedule not a mapping', 'version: 1\nschedules:\n  - just text\n', 3, None, 'schedule #1: a schedule must be a mapping'),
    ('missing name', 'version: 1\nschedules:\n  - pipeline: p\n    hourly: 1\n', 3, None, 'schedule #1: no name'),
    ('schedules a mapping', 'version: 1\nschedules: {a: 1}\n', 2, None, 'schedules must be a list of schedules'),
    ('missing schedules', 'version: 1\n', 1, None, "no schedules: add a 'schedules:' list"),
    ('missing version', 'schedules: []\n', 1, None, "no version: start the file with 'version: 1'"),
    ('future version', 'version: 2\nschedules: []\n', 1, None, 'unsupported version 2'),
    ('text version', 'version: one\nschedules: []\n', 1, None, "version must be the whole number 1, not 'one'"),
    ('top level a list', '- name: a\n', 1, None, 'the file must be a mapping of keys to values, not a list'),
    ('empty file', '# nothing here\n', 1, None, 'the file is empty'),
    ('tab indentation', 'version: 1\nschedules:\n\t- name: a\n', 3, None, 'malformed YAML'),
    ('unclosed quote', one_schedule('    pipeline: p\n    daily: "06:30\n'), None, None, 'malformed YAML'),
    ('unquoted star', one_schedule('    pipeline: p\n    cron: * * * * *\n'), 5, None, "quote cron expressions that start with '*'"),
    ('two documents', 'version: 1\nschedules: []\n---\nversion: 1\n', 3, None, 'malformed YAML'),
    ('merge key', 'version: 1\nschedules:\n  - &base {name: a, pipeline: p, hourly: 1}\n  - <<: *base\n    name: b\n', 4, 'b', 'merge keys (<<) are not supported'),
    ('custom tag', one_schedule('    pipeline: !shell p\n    hourly: 1\n'), 4, 'job', "the YAML tag '!shell' is not allowed"),
    ('set tag', one_schedule('    pipeline: p\n    hourly: 1\n    params: !!set {a, b}\n'), 6, 'job', "the YAML tag '!!set' is not allowed"),
]
# fmt: on


@pytest.mark.parametrize(("text", "line", "schedule", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_problem_is_reported_with_its_line(text, line, schedule, message):
    problem = only_problem(text)
    assert message in problem.message
    assert problem.schedule == schedule
    if line is not None:
        assert problem.line == line
        prefix = f"{PATH}:{line}:" + (f" schedule {schedule!r}:" if schedule else "")
        assert str(problem).startswith(prefix), str(problem)
    else:
        assert problem.line is not None  # the parser's line, wherever it noticed


def test_malformed_yaml_reports_the_parsers_line():
    problem = only_problem("version: 1\nschedules:\n  - name: a\n    pipeline: [p\n    hourly: 1\nfoo: bar\n")
    assert problem.line in (5, 6) and "malformed YAML" in problem.message


def test_a_duplicate_name_points_at_both_lines():
    text = "version: 1\nschedules:\n" + "".join(
        f"  - name: {n}\n    pipeline: p\n    hourly: 1\n" for n in ("a", "b", "a")
    )
    problem = only_problem(text)
    assert str(problem) == f"{PATH}:9: schedule 'a': the name 'a' is already used by the schedule on line 3"


def test_every_problem_is_reported_at_once_in_line_order():
    text = """\
version: 1
defaults:
  timezone: Mars/Olympus
schedules:
  - name: one
    pipeline: p
    daily: "7:99"
    overlap: sometimes
  - name: two
    hourly: 5
    colour: blue
  - name: three
    pipeline: p
    every: 5m
    retries: {max: 1000, backoff: never}
"""
    with pytest.raises(InvalidSpec) as caught:
        parse_spec(text, PATH)
    error = caught.value
    assert [(p.line, p.schedule) for p in error.problems] == [
        (3, None),
        (7, "one"),
        (8, "one"),
        (9, "two"),
        (11, "two"),
        (15, "three"),
        (15, "three"),
    ]
    message = str(error)
    assert message.startswith(f"{PATH}: 7 problems\n")
    for problem in error.problems:
        assert f"  {problem}" in message
    assert isinstance(error, SchedulerError)


def test_two_bad_schedules_out_of_fifty_are_exactly_the_two_reported():
    entries = []
    for i in range(50):
        trigger = f'daily: "{i % 24:02d}:{i:02d}"' if i != 6 else 'daily: "26:00"'
        zone = "Europe/Berlin" if i != 40 else "Europe/Pariss"
        entries.append(f"  - name: job-{i}\n    pipeline: pkg.jobs:run_{i}\n    {trigger}\n    timezone: {zone}\n")
    text = "version: 1\nschedules:\n" + "".join(entries)
    problems = problems_of(text)
    # entry i starts on line 3 + 4 * i; its trigger is the 3rd line, its zone the 4th
    assert [(p.line, p.schedule) for p in problems] == [(3 + 4 * 6 + 2, "job-6"), (3 + 4 * 40 + 3, "job-40")]
    assert "hour 26 is past 23" in problems[0].message
    assert "did you mean Europe/Paris" in problems[1].message
    fixed = text.replace('"26:00"', '"06:00"').replace("Europe/Pariss", "Europe/Paris")
    assert len(parse_spec(fixed, PATH).schedules) == 50


MUTATIONS = [
    "",
    "~",
    "[]",
    "{}",
    "- x",
    "!!python/object:os.system",
    "&a",
    "*a",
    "<<: *a",
    ": ",
    "'",
    '"',
    "\t",
    "|",
    "#",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 40), st.integers(0, 40), st.sampled_from(MUTATIONS) | st.text(max_size=4), st.booleans()
        ),
        max_size=4,
    )
)
def test_a_damaged_file_gives_problems_never_another_error(mutations):
    lines = BRIEF_EXAMPLE.splitlines(keepends=True)
    for index, column, token, delete in mutations:
        index %= len(lines)
        if delete and len(lines) > 1:
            del lines[index]
        else:
            lines[index] = lines[index][:column] + token + lines[index][column:]
    try:
        parse_spec("".join(lines), PATH)
    except InvalidSpec as error:
        assert error.problems and all(p.line is None or p.line >= 1 for p in error.problems)


# -- safe loading --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        '!!python/object/apply:os.system ["touch {marker}"]',
        '!!python/object/apply:subprocess.check_call [["touch", "{marker}"]]',
        "!!python/object:builtins.dict {{}}",
        "!!python/name:os.system",
    ],
)
def test_python_tags_are_refused_as_problems_and_never_run(tmp_path, payload):
    marker = tmp_path / "pwned"
    value = payload.format(marker=marker)
    for where in (f"    params:\n      x: {value}\n", f"    description: {value}\n", f"    params: {value}\n"):
        text = one_schedule("    pipeline: p\n    hourly: 1\n" + where)
        problem = only_problem(text)
        assert "is not allowed: a schedules file holds plain data only" in problem.message
        assert problem.line in (6, 7)
    assert not marker.exists()


def test_aliases_cannot_blow_up_params():
    bomb = ["version: 1", "schedules:", "  - name: a", "    pipeline: p", "    hourly: 1", "    params:"]
    bomb.append('      l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]')
    for i in range(1, 8):
        bomb.append(f"      l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    problem = only_problem("\n".join(bomb) + "\n")
    assert "too large" in problem.message


# -- reading files -------------------------------------------------------------------------------


def test_load_spec_reads_a_file_and_names_it_as_the_source(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(BRIEF_EXAMPLE, encoding="utf-8")
    spec = load_spec(path)
    assert spec.path == str(path) and {s.source for s in spec.schedules} == {str(path)}


def test_load_spec_refuses_missing_unreadable_and_non_utf8_files(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(SpecFileError, match=re.escape(f"{missing}: no such file")):
        load_spec(missing)
    with pytest.raises(SpecFileError, match="directory"):
        load_spec(tmp_path)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"version: 1\nschedules:\n  - name: caf\xe9\n")
    with pytest.raises(SpecFileError, match=r"not UTF-8 text \(byte 0xe9 on line 3\)"):
        load_spec(latin)


def test_problems_name_the_path_as_given(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nschedules:\n  - name: a\n", encoding="utf-8")
    with pytest.raises(InvalidSpec) as caught:
        load_spec(path)
    assert str(caught.value.problems[0]).startswith(f"{path}:3: schedule 'a': ")


def test_the_example_file_is_valid_and_schedules_the_example_pipelines():
    spec = load_spec(ROOT / "schedules.example.yaml")
    by_name = {s.name: s for s in spec.schedules}
    assert set(by_name) == {"csv-summary", "flowyml-demo", "nightly-report", "weekday-report", "hourly-sync"}
    assert by_name["csv-summary"].pipeline == "daily_summary"
    assert by_name["csv-summary"].trigger == CronTrigger("* * * * *") and by_name["csv-summary"].params
    assert by_name["flowyml-demo"].pipeline == "flowyml_demo"
    assert isinstance(by_name["flowyml-demo"].trigger, IntervalTrigger)
    assert by_name["flowyml-demo"].trigger.every == timedelta(seconds=30)
    assert (by_name["nightly-report"].trigger, by_name["nightly-report"].timezone) == (
        DailyTrigger(2, 30),
        "Europe/Berlin",
    )
    weekday = by_name["weekday-report"]
    assert weekday.exclusions.holidays == HolidayCalendar(country="US", subdivision="NY")
    assert weekday.exclusions.on_excluded is OnExcluded.skip and weekday.exclusions.dates == (date(2026, 12, 24),)
    hourly = by_name["hourly-sync"]
    assert hourly.trigger == HourlyTrigger(15) and not hourly.enabled and hourly.pause_note
    assert spec.warnings == ()


# -- writing -------------------------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
WHOLE_SECONDS = st.integers(min_value=1, max_value=400 * 86400).map(lambda s: timedelta(seconds=s))
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "America/St_Johns"]
ANCHORS = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3, minutes=-30)), ZoneInfo("Europe/Berlin")]),
)
CRONS = ["* * * * *", "*/15 9-17 * * MON-FRI", "0 0 L * *", "0 9 1W * *", "30 2 * * 5#2", "@daily", "0 3 * * 0,7"]
TRIGGERS = st.one_of(
    st.sampled_from(CRONS).map(CronTrigger),
    st.builds(lambda m, h: CronTrigger(f"{m} {h} * * *"), st.integers(0, 59), st.integers(0, 23)),
    st.builds(DailyTrigger, st.integers(0, 23), st.integers(0, 59)),
    st.builds(HourlyTrigger, st.integers(0, 59)),
    st.builds(IntervalTrigger, WHOLE_SECONDS, ANCHORS),
)
POLICIES = st.builds(
    Policy,
    catchup=st.sampled_from(CatchUp),
    max_catchup=st.integers(1, 100_000),
    misfire_grace=st.none() | WHOLE_SECONDS,
    overlap=st.sampled_from(Overlap),
    timeout=st.none() | WHOLE_SECONDS,
    retries=st.integers(0, 100),
    retry_backoff=st.integers(0, 86400).map(lambda s: timedelta(seconds=s)),
)
DAYS = st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31))
EXCLUSIONS = st.builds(
    Exclusions,
    holidays=st.sampled_from(
        [None, HolidayCalendar("US", "NY"), HolidayCalendar("DE"), HolidayCalendar(market="NYSE")]
    ),
    dates=st.lists(DAYS, max_size=3).map(tuple),
    ranges=st.lists(
        st.tuples(DAYS, st.integers(0, 30)).map(lambda p: DateRange(p[0], p[0] + timedelta(days=p[1]))), max_size=2
    ).map(tuple),
    on_excluded=st.sampled_from(OnExcluded),
)


def _timing(trigger, exclusions: Exclusions) -> dict:
    """A trigger with exclusions that fit it: one that fires more than once a day skips."""
    try:
        check_exclusions_fit(trigger, exclusions)
    except InvalidExclusion:
        exclusions = replace(exclusions, on_excluded=OnExcluded.skip)
    return {"trigger": trigger, "exclusions": exclusions}


SCHEDULES = st.builds(
    lambda timing, **fields: Schedule(**timing, **fields),
    name=st.from_regex(NAME_PATTERN, fullmatch=True),
    pipeline=st.from_regex(PIPELINE_PATTERN, fullmatch=True).filter(lambda p: len(p) <= MAX_PIPELINE_LENGTH),
    timing=st.builds(_timing, TRIGGERS, EXCLUSIONS),
    timezone=st.sampled_from(ZONES),
    params=st.dictionaries(st.text(max_size=10), JSON, max_size=4),
    description=st.text(
        st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40
    ),  # no database holds a NUL
    tags=st.lists(st.from_regex(NAME_PATTERN, fullmatch=True), max_size=3).map(tuple),
    enabled=st.booleans(),
    pause_note=st.none() | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20),
    policy=POLICIES,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SCHEDULES, max_size=4, unique_by=lambda s: s.name))
def test_dump_then_parse_gives_the_same_schedules_and_the_same_bytes(schedules):
    text = dump_spec(schedules)
    spec = parse_spec(text, "export.yaml")
    expected = sorted((replace(s, source="export.yaml") for s in schedules), key=lambda s: s.name)
    assert list(spec.schedules) == expected
    assert all(spec.explicit_anchor.values())
    assert dump_spec(spec.schedules) == text
    assert dump_spec(reversed(schedules)) == text
    # a YAML 1.1 reader (PyYAML) sees the same data: nothing it would read as a bool or number
    assert pyyaml.safe_load(text)["schedules"] == _plain_dicts(spec)


def _plain_dicts(spec: SpecFile) -> list[dict]:
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(dump_spec(spec.schedules))["schedules"]


def test_dump_writes_only_non_default_fields_and_always_the_zone_and_anchor():
    schedules = [
        Schedule("b-job", "pkg:run", IntervalTrigger(timedelta(minutes=90), datetime(2026, 1, 1, 1, tzinfo=UTC))),
        Schedule(
            "a-job",
            "daily_summary",
            DailyTrigger(6, 30),
            timezone="Europe/Berlin",
            params={"z": 1, "a": {"y": True, "b": None}},
            tags=("x", "a"),
            enabled=False,
            pause_note="upstream",
            policy=Policy(retries=2, timeout=timedelta(minutes=30)),
        ),
    ]
    assert dump_spec(schedules) == (
        "# flowyml-sched schedules, format version 1: see flowyml-sched.yaml(5).\n"
        "# Apply with: flowyml-sched apply FILE\n"
        "version: 1\n"
        "schedules:\n"
        "  - name: a-job\n"
        "    pipeline: daily_summary\n"
        '    daily: "06:30"\n'
        "    timezone: Europe/Berlin\n"
        "    params:\n"
        "      a:\n"
        "        b: null\n"
        "        y: true\n"
        "      z: 1\n"
        "    tags: [a, x]\n"
        "    enabled: false\n"
        "    pause_note: upstream\n"
        "    timeout: 30m\n"
        "    retries: {max: 2}\n"
        "\n"
        "  - name: b-job\n"
        "    pipeline: pkg:run\n"
        "    every: 1h30m\n"
        '    anchor: "2026-01-01T01:00:00Z"\n'
        "    timezone: UTC\n"
    )


def test_dump_of_nothing_and_of_ambiguous_text():
    assert dump_spec([]).endswith("version: 1\nschedules: []\n")
    schedule = Schedule("a", "p", HourlyTrigger(0), params={"yes": "no", "t": "12:30", "e": "1e5", "nl": "a\nb"})
    text = dump_spec([schedule])
    assert '"yes": "no"' in text and '"12:30"' in text and "'1e5'" in text and '"a\\nb"' in text
    assert parse_spec(text, "x").schedules[0].params == schedule.params


def test_dump_refuses_two_schedules_with_one_name():
    with pytest.raises(InvalidSpec, match="given more than once"):
        dump_spec([Schedule("a", "p", HourlyTrigger(0)), Schedule("a", "q", HourlyTrigger(1))])


def test_save_spec_writes_atomically_and_keeps_the_mode(tmp_path):
    path = tmp_path / "out.yaml"
    path.write_text("old\n")
    os.chmod(path, 0o640)
    save_spec(path, [Schedule("a", "p", HourlyTrigger(0))])
    assert load_spec(path).names == ["a"]
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["out.yaml"]


def test_write_text_atomic_writes_through_a_symlink(tmp_path):
    target = tmp_path / "real.yaml"
    target.write_text("old\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    write_text_atomic(str(link), "new\n")
    assert link.is_symlink() and target.read_text() == "new\n"


def test_write_text_atomic_names_the_path_when_it_cannot_write(tmp_path):
    with pytest.raises(SpecFileError, match="missing-dir"):
        write_text_atomic(str(tmp_path / "missing-dir" / "x.yaml"), "x")


# -- planning ------------------------------------------------------------------------------------

NOW = datetime(2026, 3, 28, 12, 0, 30, 123456, tzinfo=UTC)


def stored(schedule: Schedule, source: str = PATH) -> Schedule:
    """``schedule`` as the store would return it: store-only fields set."""
    return replace(
        schedule,
        source=source,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        updated_at=datetime(2026, 2, 1, tzinfo=UTC),
        next_fire_at=datetime(2026, 3, 29, tzinfo=UTC),
        version=7,
    )


def test_plan_sorts_schedules_into_create_change_unchanged_and_delete():
    spec = parse_spec(BRIEF_EXAMPLE, PATH)
    by_name = {s.name: s for s in spec.schedules}
    current = [
        stored(by_name["hourly-sync"]),  # unchanged
        stored(replace(by_name["weekday-report"], timezone="UTC", description="old")),  # changed
        stored(Schedule("gone", "p", HourlyTrigger(3))),  # from this file, no longer in it
        stored(Schedule("cli-made", "p", HourlyTrigger(4)), source="cli"),  # not ours
        stored(Schedule("other-file", "p", HourlyTrigger(4)), source="other.yaml"),  # not ours
    ]
    result = plan(spec, current, prune=True, source=PATH, now=NOW)
    assert [e.name for e in result.creates] == ["daily-summary", "poll-api"]
    assert [e.name for e in result.changes] == ["weekday-report"]
    assert result.changes[0].fields == ("timezone", "description")
    assert [e.name for e in result.unchanged] == ["hourly-sync"]
    assert [e.name for e in result.deletes] == ["gone"]
    assert result.counts() == {"create": 2, "change": 1, "delete": 1, "unchanged": 1}
    assert result.summary() == "2 to create, 1 to change, 1 to delete, 1 unchanged"
    assert result.has_changes

    without_prune = plan(spec, current, prune=False, source=PATH, now=NOW)
    assert without_prune.deletes == () and without_prune.counts()["delete"] == 0


def test_plan_gives_next_fire_times_before_and_after_and_none_while_paused():
    spec = parse_spec(BRIEF_EXAMPLE, PATH)
    weekday = spec.get("weekday-report")
    current = [stored(replace(weekday, trigger=CronTrigger("0 10 * * MON-FRI")))]
    result = plan(spec, current, prune=False, source=PATH, now=NOW)
    change = result.changes[0]
    assert change.fields == ("trigger",)
    # Saturday 2026-03-28; Monday 2026-03-30 is after the spring change in Berlin (+02:00)
    assert change.next_before == datetime.fromisoformat("2026-03-30T10:00:00+02:00")
    assert change.next_after == datetime.fromisoformat("2026-03-30T09:00:00+02:00")
    creates = {e.name: e for e in result.creates}
    assert creates["daily-summary"].next_after is None  # paused in the file
    assert creates["daily-summary"].next_before is None and creates["daily-summary"].old is None
    assert creates["hourly-sync"].next_after == datetime.fromisoformat("2026-03-28T13:15:00+01:00")


def test_plan_ignores_store_only_fields_so_reapplying_changes_nothing():
    spec = parse_spec(BRIEF_EXAMPLE, PATH)
    first = plan(spec, [], prune=True, source=PATH, now=NOW)
    current = [stored(e.new) for e in first.creates]
    again = plan(parse_spec(BRIEF_EXAMPLE, PATH), current, prune=True, source=PATH, now=NOW + timedelta(days=3))
    assert not again.has_changes and len(again.unchanged) == 4


def test_an_interval_without_anchor_keeps_the_stored_anchor_and_a_new_one_gets_now():
    text = one_schedule("    pipeline: p\n    every: 10m\n")
    created = plan(parse_spec(text, PATH), [], prune=False, source=PATH, now=NOW)
    anchor = created.creates[0].new.trigger.anchor
    assert anchor == datetime(2026, 3, 28, 12, 0, 30, tzinfo=UTC)  # now, to the whole second
    assert created.creates[0].next_after == datetime(2026, 3, 28, 12, 10, 30, tzinfo=UTC)

    current = [stored(created.creates[0].new)]
    later = NOW + timedelta(days=40, seconds=7)
    again = plan(parse_spec(text, PATH), current, prune=False, source=PATH, now=later)
    assert not again.has_changes
    assert again.unchanged[0].new.trigger.anchor == anchor

    longer = plan(parse_spec(text.replace("10m", "15m"), PATH), current, prune=False, source=PATH, now=later)
    assert longer.changes[0].fields == ("trigger",)
    assert longer.changes[0].new.trigger == IntervalTrigger(timedelta(minutes=15), anchor)

    pinned = text + '    anchor: "2026-01-01T00:00:00+01:00"\n'
    moved = plan(parse_spec(pinned, PATH), current, prune=False, source=PATH, now=later)
    assert moved.changes[0].fields == ("anchor",)
    assert moved.changes[0].new.trigger.anchor == datetime(2025, 12, 31, 23, tzinfo=UTC)


def test_an_interval_replacing_another_kind_is_anchored_now():
    text = one_schedule("    pipeline: p\n    every: 10m\n")
    current = [stored(Schedule("job", "p", HourlyTrigger(5)))]
    result = plan(parse_spec(text, PATH), current, prune=False, source=PATH, now=NOW)
    assert result.changes[0].new.trigger.anchor == NOW.replace(microsecond=0)


def test_plan_takes_a_list_and_sets_the_source():
    schedule = Schedule("a", "p", HourlyTrigger(1), source="somewhere")
    result = plan([schedule], [stored(schedule, source="cli")], prune=True, source="x.yaml", now=NOW)
    assert result.unchanged[0].new.source == "x.yaml"
    assert result.other_source == ("a",)
    assert result.deletes == ()


def test_plan_is_pure_and_refuses_naive_now_and_repeated_names():
    spec = parse_spec(BRIEF_EXAMPLE, PATH)
    assert plan(spec, [], prune=True, source=PATH, now=NOW) == plan(spec, [], prune=True, source=PATH, now=NOW)
    with pytest.raises(ValueError, match="naive"):
        plan(spec, [], prune=True, source=PATH, now=datetime(2026, 1, 1))
    twice = [Schedule("a", "p", HourlyTrigger(1)), Schedule("a", "q", HourlyTrigger(2))]
    with pytest.raises(InvalidSpec):
        plan(twice, [], prune=False, source=PATH, now=NOW)


def test_changed_fields_names_every_definition_field_and_compares_params_as_json():
    old = Schedule("a", "p", HourlyTrigger(1), params={"n": 1})
    assert changed_fields(old, stored(old)) == ()
    assert changed_fields(old, replace(old, params={"n": True})) == ("params",)
    assert changed_fields(old, replace(old, params={"n": 1.0})) == ("params",)
    new = replace(
        old,
        pipeline="q",
        trigger=DailyTrigger(1, 1),
        timezone="Asia/Tokyo",
        description="d",
        tags=("t",),
        enabled=False,
        pause_note="n",
        policy=Policy(
            catchup=CatchUp.all,
            max_catchup=5,
            misfire_grace=timedelta(seconds=5),
            overlap=Overlap.queue,
            timeout=timedelta(seconds=9),
            retries=1,
            retry_backoff=timedelta(0),
        ),
    )
    assert changed_fields(old, new) == (
        "pipeline",
        "trigger",
        "timezone",
        "description",
        "tags",
        "enabled",
        "pause_note",
        "catchup",
        "max_catchup",
        "misfire_grace",
        "overlap",
        "timeout",
        "retries",
        "retry_backoff",
    )


# -- the manual ----------------------------------------------------------------------------------

MANUAL = ROOT / "man" / "flowyml-sched.yaml.5"


def test_the_manual_renders_without_warnings():
    if shutil.which("man") is None and shutil.which("groff") is None:
        pytest.skip("neither man (Debian man-db) nor groff (groff-base) is installed")
    if shutil.which("groff") is not None:
        result = subprocess.run(["groff", "-man", "-ww", "-z", str(MANUAL)], capture_output=True, text=True)
        assert (result.returncode, result.stderr) == (0, "")
    if shutil.which("man") is not None:
        result = subprocess.run(
            ["man", "--warnings", "-l", str(MANUAL)],
            capture_output=True,
            text=True,
            env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0"},
        )
        assert (result.returncode, result.stderr) == (0, "")
        page = re.sub(".\b", "", result.stdout)  # overstrike bold, when man formats for a terminal
        for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "TIME SEMANTICS", "EXAMPLES", "SEE ALSO"):
            assert f"\n{heading}\n" in page
        assert "flowyml-sched(1)" in page


def test_the_manual_describes_every_key_and_its_example_is_valid():
    from flowyml_sched.spec import SCHEDULE_KEYS, TOP_KEYS

    source = MANUAL.read_text(encoding="utf-8")
    for key in (*SCHEDULE_KEYS, *TOP_KEYS):
        assert re.search(rf"^\.BR {key} \"", source, re.M), key
    example = source.split(".SH EXAMPLES", 1)[1].split(".nf\n", 1)[1].split(".fi\n", 1)[0]
    spec = parse_spec(example.replace("\\-", "-"), "manual")
    assert len(spec.schedules) == 4


@pytest.mark.parametrize(
    "text",
    [
        'version: 1\nschedules:\n\t- name: a\n\t  pipeline: p\n\t  daily: "02:00"\n',
        'version: 1\nschedules:\n  - name: a\n    pipeline: p\n\tdaily: "02:00"\n',
    ],
)
def test_a_tab_in_the_indentation_is_named_with_its_line(text: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_spec(text, PATH)
    (problem,) = caught.value.problems
    assert problem.line == text[: text.index("\t")].count("\n") + 1
    assert "YAML indents with spaces, not tabs" in str(problem)
