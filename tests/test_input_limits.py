"""Limits checked in one place and applied the same by every way in: params depth and size,
the length of a pipeline reference (the store's columns), a database password in messages."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from flowyml_sched.application import Scheduler
from flowyml_sched.cli import app
from flowyml_sched.model import MAX_PARAMS_BYTES, MAX_PARAMS_DEPTH, MAX_PIPELINE_LENGTH, Schedule
from flowyml_sched.spec import parse_spec
from flowyml_sched.store import ScheduleStore
from flowyml_sched.store.schema import schedules
from flowyml_sched.triggers import DailyTrigger

UTC = timezone.utc
NOW = datetime(2026, 1, 9, 12, 0, tzinfo=UTC)
runner = CliRunner()


def nested(levels: int) -> object:
    """A value that brings the params to ``levels`` levels deep (the params mapping is level 1)."""
    value: object = 1
    for _ in range(levels - 1):
        value = [value]
    return value


def nested_json(levels: int) -> str:
    """The JSON text of :func:`nested` (built as text: ``json.dumps`` cannot write very deep values)."""
    return "[" * (levels - 1) + "1" + "]" * (levels - 1)


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert isinstance(result.exception, SystemExit | None), result.exception  # never a traceback
    return result.exit_code, result.output


def stored_names(store_url: str) -> list[str]:
    code, output = cli("list", "--json", "--db-url", store_url)
    assert code == 0, output
    return [entry["name"] for entry in json.loads(output)]


@pytest.fixture
def store_url_made(store: ScheduleStore, store_url: str) -> str:
    """``store_url`` once its store exists (commands that only read refuse a missing store)."""
    return store_url


@pytest.mark.parametrize("depth", [990, 500, 150, MAX_PARAMS_DEPTH + 1])
def test_a_param_nested_past_the_limit_is_refused_by_add_and_edit_with_one_line_naming_the_schedule(
    store_url_made: str, depth: int
) -> None:
    store_url = store_url_made
    deep = "x=" + nested_json(depth)
    code, output = cli("add", "deep", "--pipeline", "a.b:c", "--daily", "02:00", "--no-check-pipeline",
                       "--param", deep, "--db-url", store_url)  # fmt: skip
    assert code == 1
    assert output.count("\n") == 1 and "'deep'" in output and "params" in output and "levels deep" in output
    assert "deep" not in stored_names(store_url)
    code, output = cli("add", "deep", "--pipeline", "a.b:c", "--daily", "02:00", "--no-check-pipeline",
                       "--db-url", store_url)  # fmt: skip
    assert code == 0, output
    code, output = cli("edit", "deep", "--param", deep, "--db-url", store_url)
    assert code == 1
    assert output.count("\n") == 1 and "'deep'" in output and "levels deep" in output


def test_params_at_the_depth_limit_go_through_add_export_and_apply(store_url: str, tmp_path: Path) -> None:
    deepest = "x=" + json.dumps(nested(MAX_PARAMS_DEPTH))
    code, output = cli("add", "deep", "--pipeline", "a.b:c", "--daily", "02:00", "--no-check-pipeline",
                       "--param", deepest, "--db-url", store_url)  # fmt: skip
    assert code == 0, output
    exported = tmp_path / "export.yaml"
    code, output = cli("export", "--output", str(exported), "--db-url", store_url)
    assert code == 0, output
    code, output = cli("apply", str(exported), "--no-check-pipeline", "--db-url", store_url)
    assert code == 0, output
    assert "1 unchanged: nothing to do" in output


def test_a_yaml_file_with_params_past_the_limit_is_refused_by_apply_and_nothing_is_stored(
    store_url_made: str, tmp_path: Path
) -> None:
    store_url = store_url_made
    spec = tmp_path / "deep.yaml"
    spec.write_text(
        "version: 1\nschedules:\n  - name: deep\n    pipeline: a.b:c\n    daily: '02:00'\n"
        f"    params: {{x: {json.dumps(nested(MAX_PARAMS_DEPTH + 1))}}}\n"
    )
    code, output = cli("apply", str(spec), "--no-check-pipeline", "--db-url", store_url)
    assert code == 1
    assert "schedule 'deep'" in output and f"nested more than {MAX_PARAMS_DEPTH} levels" in output
    assert stored_names(store_url) == []


def test_params_larger_than_the_limit_are_refused_with_their_size(store_url_made: str) -> None:
    store_url = store_url_made
    big = "x=" + "a" * MAX_PARAMS_BYTES
    code, output = cli("add", "big", "--pipeline", "a.b:c", "--daily", "02:00", "--no-check-pipeline",
                       "--param", big, "--db-url", store_url)  # fmt: skip
    assert code == 1
    assert output.count("\n") == 1 and "'big'" in output and f"at most {MAX_PARAMS_BYTES} are allowed" in output
    assert stored_names(store_url) == []


def test_a_pipeline_reference_longer_than_its_column_is_refused_on_every_store(
    store_url_made: str, tmp_path: Path
) -> None:
    store_url = store_url_made
    # SQLite would keep it, PostgreSQL would fail with StringDataRightTruncation: the model refuses it first
    reference = "a" * (MAX_PIPELINE_LENGTH + 1)
    code, output = cli("add", "long", "--pipeline", reference, "--daily", "02:00", "--no-check-pipeline",
                       "--db-url", store_url)  # fmt: skip
    assert code == 1
    assert output.count("\n") == 1 and "'long'" in output and f"at most {MAX_PIPELINE_LENGTH} are allowed" in output
    spec = tmp_path / "long.yaml"
    spec.write_text(f"version: 1\nschedules:\n  - name: long\n    pipeline: {reference}\n    daily: '02:00'\n")
    code, output = cli("apply", str(spec), "--no-check-pipeline", "--db-url", store_url)
    assert code == 1 and "at most 512" in output
    assert stored_names(store_url) == []


def test_a_pipeline_reference_of_the_longest_length_is_stored_on_every_store(store: ScheduleStore) -> None:
    reference = "a" * MAX_PIPELINE_LENGTH
    Scheduler(store, clock=lambda: NOW).add_schedule(
        Schedule("long", reference, DailyTrigger(2, 0)), check_pipeline=False
    )
    assert store.get("long").pipeline == reference


def test_every_text_column_a_user_fills_is_at_least_as_long_as_the_model_allows() -> None:
    from flowyml_sched.model import MAX_TIMEZONE_LENGTH, NAME_PATTERN

    longest_name = int(NAME_PATTERN.pattern.rsplit(",", 1)[1].rstrip("}")) + 1
    limits = {"name": longest_name, "pipeline": MAX_PIPELINE_LENGTH, "timezone": MAX_TIMEZONE_LENGTH}
    for column, limit in limits.items():
        assert schedules.c[column].type.length == limit, column


@pytest.mark.parametrize(
    "password",
    ["Xq7@Zr9", "Ab1@Cd2:Ef3", "Secr3t@W0rdz@Mn8", "Gh4@Ij5/Kl6"],
)
def test_a_password_with_an_unencoded_at_is_never_echoed_in_part(password: str, tmp_path: Path) -> None:
    url = f"postgresql+psycopg://user:{password}@127.0.0.1:1/test"
    code, output = cli("list", "--db-url", url)
    assert code == 1
    assert "%40" in output
    assert "user:***@127.0.0.1:1/test" in output
    for piece in password.replace(":", "@").replace("/", "@").split("@"):
        assert piece not in output, piece


# -- anything stored exports to a file that apply takes back unchanged ---------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=20,
)
_PARAMS = st.dictionaries(_TEXT.filter(lambda k: k != "scheduled_for"), _VALUES, max_size=4) | st.integers(
    1, MAX_PARAMS_DEPTH
).map(lambda depth: {"deep": nested(depth)})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=_PARAMS)
def test_any_params_that_are_stored_export_to_a_file_that_apply_takes_back_unchanged(
    store: ScheduleStore, tmp_path: Path, params: dict
) -> None:
    store.clear(NOW)
    schedule = Schedule("p", "a.b:c", DailyTrigger(2, 0), params=params)
    scheduler = Scheduler(store, clock=lambda: NOW)
    scheduler.add_schedule(schedule, check_pipeline=False)
    exported = scheduler.export()
    assert parse_spec(exported, "export.yaml").schedules[0].params == store.get("p").params == params
    path = tmp_path / "export.yaml"
    path.write_text(exported, encoding="utf-8")
    plan = scheduler.apply_file(str(path), prune=True, dry_run=False, check_pipelines=False)
    assert not plan.has_changes
    assert store.get("p").params == params
