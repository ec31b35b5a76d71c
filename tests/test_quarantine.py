"""Stored rows that cannot be loaded (a zone a tzdata update dropped, SQL typed by hand) are
skipped and reported, never fatal: the worker keeps running the others, the commands show them
as broken and can repair or remove them. Real SQLite and PostgreSQL, the real CLI."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from flowyml_sched.application import Scheduler
from flowyml_sched.cli import app
from flowyml_sched.locks import FileLocks
from flowyml_sched.model import BrokenSchedule, Schedule, WorkerInfo
from flowyml_sched.store import ScheduleStore, open_store
from flowyml_sched.triggers import CronTrigger
from flowyml_sched.worker import Worker, WorkerSettings

UTC = timezone.utc
CREATED = datetime(2026, 1, 9, 12, 0, tzinfo=UTC)
MINUTE1 = CREATED + timedelta(minutes=1)
WORKER = WorkerInfo("w1", "host", 1, CREATED, CREATED, CREATED + timedelta(days=30), "alive")
runner = CliRunner()


@pytest.fixture
def sql(store_url: str, store: ScheduleStore) -> Iterator[sa.Engine]:
    """An engine of its own on the test's store, for the SQL an operator types by hand."""
    engine = sa.create_engine(store_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


def by_hand(engine: sa.Engine, statement: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(statement))


def add_every_minute(store: ScheduleStore, *names: str) -> None:
    for name in names:
        Scheduler(store, clock=lambda: CREATED).add_schedule(
            Schedule(name, "a.b:c", CronTrigger("* * * * *")), check_pipeline=False
        )


def deep_params(levels: int) -> str:
    return json.dumps({"x": json.loads("[" * (levels - 1) + "1" + "]" * (levels - 1))})


BREAKAGES = [
    ("timezone", "timezone = 'Mars/Olympus'", "unknown timezone 'Mars/Olympus'"),
    ("expression", "expression = '61 * * * *'", "invalid cron expression"),
    ("kind", "kind = 'weekly'", "unknown trigger kind 'weekly'"),
    ("name", "name = 'bad name!'", "invalid schedule name"),
    ("params", "params = '[1, 2]'", "is not a mapping"),
    ("params", f"params = '{deep_params(40)}'", "nested more than 32 levels deep"),
    ("catchup", "catchup = 'bogus'", "invalid catchup 'bogus': expected one of latest, none, all"),
    ("retries", "retries = 1000", "invalid retries 1000"),
    ("pipeline", "pipeline = 'not a reference'", "invalid pipeline 'not a reference'"),
    # text where a list belongs: it would load as one tag per character
    ("tags", """tags = '"notalist"'""", "'notalist' is not a list of tags"),
    ("exclusions", """exclusions = '{"holidays": {"country": "XX"}}'""", "invalid holidays country 'XX'"),
    ("exclusions", """exclusions = '{"dates": ["2026-02-30"]}'""", "'2026-02-30': it is not a date"),
    ("exclusions", """exclusions = '{"on_excluded": "never"}'""", "invalid on_excluded 'never'"),
    ("misfire_grace_seconds", "misfire_grace_seconds = 1e308", "too large"),  # no timedelta holds it
]


@pytest.mark.parametrize(
    ("field", "assignment", "why"), BREAKAGES, ids=[f"{b[0]}-{i}" for i, b in enumerate(BREAKAGES)]
)
def test_a_row_that_cannot_be_loaded_is_listed_as_broken_naming_the_schedule_and_the_field(
    store: ScheduleStore, sql: sa.Engine, field: str, assignment: str, why: str
) -> None:
    add_every_minute(store, "m1", "ok")
    by_hand(sql, f"UPDATE schedules SET {assignment} WHERE name = 'm1'")
    entries = store.entries()
    broken = [e for e in entries if isinstance(e, BrokenSchedule)]
    assert [e.name for e in entries if isinstance(e, Schedule)] == ["ok"]
    assert len(broken) == 1
    name = broken[0].name
    assert broken[0].message.startswith(f"schedule {name!r}, field {field}: ")
    assert why in broken[0].message and "\n" not in broken[0].message
    assert [s.name for s in store.list()] == ["ok"]


def test_json_text_that_does_not_parse_makes_its_row_broken_not_the_read(tmp_path: Path) -> None:
    # only SQLite can hold it (PostgreSQL's json type refuses it)
    from flowyml_sched.store import open_store

    url = f"sqlite:///{tmp_path / 's.db'}"
    with open_store(url) as store:
        add_every_minute(store, "m1", "ok")
        engine = sa.create_engine(url)
        by_hand(engine, "UPDATE schedules SET params = '{bad' WHERE name = 'm1'")
        engine.dispose()
        (broken,) = [e for e in store.entries() if isinstance(e, BrokenSchedule)]
        assert broken.message.startswith("schedule 'm1', field params: the stored value '{bad' cannot be read")
        claimed = store.claim_due(MINUTE1, WORKER, 10)
        assert [c.schedule.name for c in claimed.claims] == ["ok"]


def test_broken_rows_due_first_do_not_take_the_round_and_healthy_ones_run_on_time(
    store: ScheduleStore, sql: sa.Engine
) -> None:
    add_every_minute(store, "b1", "b2", "b3", "ok")
    by_hand(sql, "UPDATE schedules SET timezone = 'Mars/Olympus' WHERE name IN ('b1', 'b2', 'b3')")
    # due before the healthy one, so the oldest-first read meets them first, more than the limit
    by_hand(sql, "UPDATE schedules SET next_fire_at = next_fire_at - INTERVAL '1 second' WHERE name <> 'ok'"
            if store.dialect == "postgresql" else
            "UPDATE schedules SET next_fire_at = '2026-01-09 12:00:59.000000' WHERE name <> 'ok'")  # fmt: skip
    first = store.claim_due(MINUTE1, WORKER, 1)
    assert [(c.schedule.name, c.scheduled_for) for c in first.claims] == [("ok", MINUTE1)]
    assert sorted(b.name for b in first.broken) == ["b1", "b2", "b3"]
    assert first.next_due_at == MINUTE1 + timedelta(minutes=1)  # the broken rows' past due times do not count
    second = store.claim_due(MINUTE1 + timedelta(minutes=1), WORKER, 1)
    assert [c.schedule.name for c in second.claims] == ["ok"]
    assert second.broken == ()  # reported once, not every round
    assert store.next_due_at() == MINUTE1 + timedelta(minutes=2)


def test_a_broken_row_is_reported_again_only_when_it_changes_and_runs_once_repaired_by_hand(
    store: ScheduleStore, sql: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    add_every_minute(store, "m1", "ok")
    by_hand(sql, "UPDATE schedules SET timezone = 'Mars/Olympus' WHERE name = 'm1'")
    with caplog.at_level(logging.ERROR, logger="flowyml_sched.store.schedule_store"):
        assert [b.name for b in store.claim_due(MINUTE1, WORKER, 10).broken] == ["m1"]
        assert store.claim_due(MINUTE1 + timedelta(seconds=1), WORKER, 10).broken == ()
        by_hand(sql, "UPDATE schedules SET timezone = 'Venus/Maxwell' WHERE name = 'm1'")
        assert store.next_due_at() == MINUTE1  # changed: looked at again
        again = store.claim_due(MINUTE1 + timedelta(seconds=2), WORKER, 10)
        assert [b.reason for b in again.broken] == [
            "field timezone: unknown timezone 'Venus/Maxwell'; use an IANA name such as Europe/Berlin or UTC"
        ]
    logged = [r.getMessage() for r in caplog.records if "schedule 'm1'" in r.getMessage()]
    assert len(logged) == 2 and "Mars/Olympus" in logged[0] and "Venus/Maxwell" in logged[1]
    by_hand(sql, "UPDATE schedules SET timezone = 'UTC' WHERE name = 'm1'")  # tzdata back, say
    assert store.next_due_at() == MINUTE1
    repaired = store.claim_due(MINUTE1 + timedelta(seconds=3), WORKER, 10)
    assert [(c.schedule.name, c.scheduled_for) for c in repaired.claims] == [("m1", MINUTE1)]


def test_a_repair_with_edit_makes_the_row_due_again_for_a_worker_that_quarantined_it(
    store: ScheduleStore, sql: sa.Engine
) -> None:
    add_every_minute(store, "m1")
    by_hand(sql, "UPDATE schedules SET timezone = 'Mars/Olympus' WHERE name = 'm1'")
    assert store.claim_due(MINUTE1, WORKER, 10).next_due_at is None
    Scheduler(store, clock=lambda: MINUTE1 + timedelta(seconds=10)).edit_schedule("m1", {"timezone": "Europe/Berlin"})
    assert store.next_due_at() == MINUTE1 + timedelta(minutes=1)


def test_the_worker_keeps_running_healthy_schedules_beside_a_broken_row(
    store: ScheduleStore, sql: sa.Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("m1", "ok"):
        schedule = Schedule(name, "pipelines_for_tests:ok", CronTrigger("* * * * *"))
        Scheduler(store, clock=lambda: CREATED).add_schedule(schedule, check_pipeline=False)
    by_hand(sql, "UPDATE schedules SET timezone = 'Mars/Olympus' WHERE name = 'm1'")
    settings = WorkerSettings(log_dir=tmp_path / "logs", in_process=True, heartbeat_interval=0.0, lease=10**6)
    now = [MINUTE1]
    worker = Worker(store, FileLocks(tmp_path / "locks"), settings, clock=lambda: now[0])
    try:
        with caplog.at_level(logging.ERROR):
            for minute in range(1, 4):
                now[0] = CREATED + timedelta(minutes=minute)
                assert [c.schedule.name for c in worker.tick(now[0])] == ["ok"]
                assert worker.wait_idle(30)
    finally:
        worker.request_stop()
        worker.request_stop()
        stopper = threading.Thread(target=worker.run)
        stopper.start()
        stopper.join(30)
    assert [r.status.value for r in store.history("ok")] == ["succeeded"] * 3
    assert store.history("m1") == []
    assert sum("schedule 'm1', field timezone" in r.getMessage() for r in caplog.records) == 1


# -- the commands --------------------------------------------------------------------------------


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert isinstance(result.exception, SystemExit | None), result.exception  # never a traceback
    return result.exit_code, result.output


@pytest.fixture
def broken_m1(store: ScheduleStore, sql: sa.Engine, store_url: str) -> str:
    """A store holding ``ok`` and ``m1``, whose zone a tzdata update dropped; its URL."""
    add_every_minute(store, "m1", "ok")
    by_hand(sql, "UPDATE schedules SET timezone = 'Mars/Olympus' WHERE name = 'm1'")
    return store_url


M1_WHY = "schedule 'm1', field timezone: unknown timezone 'Mars/Olympus'"


def test_list_shows_a_broken_row_with_its_reason_and_list_json_too(broken_m1: str) -> None:
    code, output = cli("list", "--db-url", broken_m1)
    assert code == 0
    (line,) = [line for line in output.splitlines() if line.startswith("m1 ")]
    assert "Mars/Olympus" in line and "broken: field timezone: unknown timezone 'Mars/Olympus'" in line
    code, output = cli("list", "--json", "--db-url", broken_m1)
    assert code == 0
    listed = {entry["name"]: entry for entry in json.loads(output)}
    assert listed["m1"]["status"] == "broken" and "unknown timezone 'Mars/Olympus'" in listed["m1"]["error"]
    assert (listed["ok"]["status"], listed["ok"]["error"]) == ("enabled", None)


def test_health_counts_a_broken_row_and_exits_1(broken_m1: str) -> None:
    code, output = cli("health", "--json", "--db-url", broken_m1)
    assert code == 1
    report = json.loads(output)
    assert [b["name"] for b in report["broken"]] == ["m1"] and report["status"] in ("degraded", "down")
    code, output = cli("health", "--db-url", broken_m1)
    assert code == 1 and "broken: m1: field timezone: unknown timezone 'Mars/Olympus'" in output


def test_show_shows_a_broken_row_and_next_and_export_refuse_it_naming_the_field(broken_m1: str) -> None:
    code, output = cli("show", "m1", "--db-url", broken_m1)
    assert code == 0 and "Mars/Olympus" in output and "broken" in output
    code, output = cli("show", "m1", "--json", "--db-url", broken_m1)
    assert code == 0 and json.loads(output)["status"] == "broken"
    for args in (["next", "m1"], ["export"]):
        code, output = cli(*args, "--db-url", broken_m1)
        assert code == 1 and output.startswith(f"flowyml-sched: error: {M1_WHY}") and output.count("\n") == 1


def test_show_prints_a_stored_duration_no_timedelta_holds(store: ScheduleStore, sql: sa.Engine, store_url: str) -> None:
    add_every_minute(store, "m1")
    by_hand(sql, "UPDATE schedules SET misfire_grace_seconds = 1e308 WHERE name = 'm1'")
    code, output = cli("show", "m1", "--db-url", store_url)
    assert code == 0 and "1e+308" in output and "broken" in output and "Traceback" not in output


def test_edit_repairs_a_broken_row_and_an_edit_that_leaves_it_broken_is_refused(
    broken_m1: str, store: ScheduleStore
) -> None:
    code, output = cli("edit", "m1", "--description", "words", "--db-url", broken_m1)
    assert code == 1 and M1_WHY in output and output.count("\n") == 1
    assert isinstance(store.entry("m1"), BrokenSchedule)  # nothing stored
    code, output = cli("edit", "m1", "--tz", "Europe/Berlin", "--db-url", broken_m1)
    assert code == 0, output
    repaired = store.get("m1")
    assert repaired.timezone == "Europe/Berlin" and repaired.next_fire_at is not None


def test_a_broken_policy_value_is_repaired_with_its_option(
    store: ScheduleStore, sql: sa.Engine, store_url: str
) -> None:
    add_every_minute(store, "m1")
    by_hand(sql, "UPDATE schedules SET catchup = 'bogus', retries = 3 WHERE name = 'm1'")
    code, output = cli("edit", "m1", "--tz", "UTC", "--db-url", store_url)
    assert code == 1 and "schedule 'm1', field catchup: invalid catchup 'bogus'" in output
    code, output = cli("edit", "m1", "--catchup", "all", "--db-url", store_url)
    assert code == 0, output
    assert store.get("m1").policy.catchup.value == "all" and store.get("m1").policy.retries == 3


def test_pause_resume_and_remove_work_on_a_broken_row(broken_m1: str, store: ScheduleStore) -> None:
    code, output = cli("pause", "m1", "--note", "zone gone", "--db-url", broken_m1)
    assert code == 0 and "paused m1" in output
    paused = store.entry("m1")
    assert isinstance(paused, BrokenSchedule) and not paused.enabled and paused.stored["pause_note"] == "zone gone"
    code, output = cli("resume", "m1", "--db-url", broken_m1)
    assert code == 0 and "it runs once repaired" in output
    assert store.entry("m1").enabled
    code, output = cli("history", "m1", "--db-url", broken_m1)
    assert code == 0
    code, output = cli("remove", "m1", "--db-url", broken_m1)
    assert code == 0
    assert [e.name for e in store.entries()] == ["ok"]


def test_apply_replaces_a_broken_row_that_the_file_defines(
    broken_m1: str, store: ScheduleStore, tmp_path: Path
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("version: 1\nschedules:\n  - name: m1\n    pipeline: a.b:c\n    cron: '* * * * *'\n")
    code, output = cli("apply", str(spec), "--no-check-pipeline", "--db-url", broken_m1)
    assert code == 0, output
    assert store.get("m1").timezone == "UTC"


def test_an_enabled_flag_that_is_neither_true_nor_false_is_broken_and_pause_repairs_it(sqlite_url: str) -> None:
    # SQLite takes any number in a boolean column; the claim reads 7 as not enabled, so the
    # row would be listed enabled and never run
    store = open_store(sqlite_url)
    engine = sa.create_engine(sqlite_url, poolclass=sa.pool.NullPool)
    try:
        add_every_minute(store, "m1", "ok")
        by_hand(engine, "UPDATE schedules SET enabled = 7 WHERE name = 'm1'")
        (entry,) = [e for e in store.entries() if e.name == "m1"]
        assert isinstance(entry, BrokenSchedule)
        assert entry.problems == (
            ("enabled", "the stored value 7 cannot be read (7 is neither true (1) nor false (0))"),
        )
        toggled = Scheduler(store, clock=lambda: CREATED).resume("m1")  # as pause does: it writes the flag
        assert toggled.changed and isinstance(toggled.entry, Schedule) and toggled.entry.enabled
        assert toggled.entry.next_fire_at == CREATED + timedelta(minutes=1)  # so that a worker claims it
    finally:
        engine.dispose()
        store.close()
