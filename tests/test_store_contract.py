"""The schedule store's contract, on SQLite and on PostgreSQL (fixtures in conftest.py).

Every test that takes ``store`` or ``store_url`` runs once per backend; the ones named
``test_sqlite_*`` / ``test_postgresql_*`` cover what only one backend has.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowyml_sched.errors import (
    InvalidDuration,
    RunExists,
    ScheduleExists,
    ScheduleNotFound,
    StoreError,
    StoreMissing,
)
from flowyml_sched.exclusions import NO_EXCLUSIONS, DateRange, Exclusions, HolidayCalendar, OnExcluded
from flowyml_sched.model import (
    BrokenSchedule,
    CatchUp,
    Claim,
    Overlap,
    Policy,
    Run,
    RunOrigin,
    RunStatus,
    Schedule,
    WorkerInfo,
)
from flowyml_sched.store import HEAD_REVISION, ScheduleStore, open_store
from flowyml_sched.store.migrate import alembic_config
from flowyml_sched.store.schema import metadata
from flowyml_sched.triggers import CronTrigger, DailyTrigger, HourlyTrigger, IntervalTrigger

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)
LATER = datetime(2025, 3, 31, 12, 0, 0, 123456, tzinfo=UTC)

TIME_COLUMNS = {
    "schedules": {"anchor", "created_at", "updated_at", "next_fire_at"},
    "runs": {"scheduled_for", "started_at", "finished_at"},
    "workers": {"started_at", "heartbeat_at", "lease_expires_at"},
}


def etl() -> Schedule:
    return Schedule(
        name="etl",
        pipeline="etl.jobs:run",
        trigger=DailyTrigger(2, 30),
        timezone="Europe/Berlin",
        params={"day": 1, "nested": {"list": [1, 2.5, None, True, "ü"], "empty": {}}},
        tags=("a", "nightly"),
        description="Nightly ETL\nsecond line",
        next_fire_at=datetime(2025, 3, 31, 2, 30, tzinfo=BERLIN),
    )


def sync() -> Schedule:
    return Schedule(
        name="sync-15m",
        pipeline="sync",
        trigger=IntervalTrigger(timedelta(minutes=15), datetime(2025, 1, 1, 9, 0, 0, 250000, tzinfo=BERLIN)),
        timezone="Asia/Kolkata",
        tags=("a",),
        enabled=False,
        pause_note="paused for maintenance",
        policy=Policy(
            catchup=CatchUp.all,
            max_catchup=7,
            misfire_grace=timedelta(seconds=90),
            overlap=Overlap.queue,
            timeout=timedelta(hours=2, milliseconds=500),
            retries=3,
            retry_backoff=timedelta(0),
        ),
        source="/etc/flowyml/schedules.yaml",
        next_fire_at=None,
    )


def report() -> Schedule:
    return Schedule(
        name="Report.v2",
        pipeline="reports.weekly:main",
        trigger=CronTrigger("*/15 9-17 * * MON-FRI"),
        timezone="America/New_York",
        tags=("b",),
        policy=Policy(catchup=CatchUp.none, overlap=Overlap.replace, timeout=timedelta(minutes=5)),
        next_fire_at=datetime(2025, 3, 31, 13, 0, tzinfo=UTC),
    )


def ping() -> Schedule:
    return Schedule(name="hourly_ping", pipeline="ping", trigger=HourlyTrigger(5), timezone="UTC")


def all_samples() -> list[Schedule]:
    return [etl(), sync(), report(), ping()]


def as_stored(schedule: Schedule, created_at: datetime = NOW, updated_at: datetime = NOW, version: int = 1) -> Schedule:
    return dataclasses.replace(schedule, created_at=created_at, updated_at=updated_at, version=version)


def assert_utc(value: datetime | None) -> None:
    if value is not None:
        assert value.tzinfo is UTC, f"{value!r} is not aware UTC"


def assert_schedule_utc(schedule: Schedule) -> None:
    for value in (schedule.created_at, schedule.updated_at, schedule.next_fire_at):
        assert_utc(value)
    if isinstance(schedule.trigger, IntervalTrigger):
        assert_utc(schedule.trigger.anchor)


def run(name: str, at: datetime, status: RunStatus = RunStatus.succeeded, **fields) -> Run:
    return Run(schedule_name=name, scheduled_for=at, status=status, **fields)


def hours(n: float) -> datetime:
    return NOW + timedelta(hours=n)


# -- add / get ------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [etl, sync, report, ping], ids=lambda f: f.__name__)
def test_add_then_get_round_trips_every_field(store: ScheduleStore, make) -> None:
    original = dataclasses.replace(make(), created_at=LATER, updated_at=LATER, version=42)
    returned = store.add(original, NOW)
    expected = as_stored(make())
    assert returned == expected
    assert store.get(original.name) == expected
    assert_schedule_utc(store.get(original.name))


def test_round_trip_survives_reopening(store_url: str) -> None:
    with open_store(store_url) as first:
        for schedule in all_samples():
            first.add(schedule, NOW)
    with open_store(store_url) as second:
        assert second.list() == sorted((as_stored(s) for s in all_samples()), key=lambda s: s.name)


def test_add_keeps_instants_given_in_any_offset_as_utc(store: ScheduleStore) -> None:
    berlin_now = NOW.astimezone(BERLIN)
    stored = store.add(etl(), berlin_now)
    for got in (stored, store.get("etl")):
        assert got.created_at == NOW
        assert got.next_fire_at == datetime(2025, 3, 31, 0, 30, tzinfo=UTC)
        assert_schedule_utc(got)


def test_add_refuses_a_taken_name_and_keeps_the_first(store: ScheduleStore) -> None:
    store.add(etl(), NOW)
    with pytest.raises(ScheduleExists, match="etl"):
        store.add(dataclasses.replace(etl(), pipeline="other:thing"), LATER)
    assert store.get("etl") == as_stored(etl())


def test_get_unknown_name_raises(store: ScheduleStore) -> None:
    with pytest.raises(ScheduleNotFound, match="nope"):
        store.get("nope")


def test_add_refuses_sub_second_intervals(store: ScheduleStore) -> None:
    odd = Schedule(name="odd", pipeline="p", trigger=IntervalTrigger(timedelta(seconds=1.5), NOW))
    with pytest.raises(InvalidDuration):
        store.add(odd, NOW)
    assert store.list() == []


# -- naive datetimes ------------------------------------------------------------------------


def test_naive_now_is_refused(store: ScheduleStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.add(etl(), datetime(2025, 1, 1))
    store.add(etl(), NOW)
    with pytest.raises(ValueError, match="naive"):
        store.replace(etl(), datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        store.apply([ping()], [], [], datetime(2025, 1, 1))
    assert [s.name for s in store.list()] == ["etl"]
    assert store.get("etl").version == 1


def test_naive_next_fire_at_is_refused(store: ScheduleStore) -> None:
    with pytest.raises(ValueError, match="next_fire_at"):
        store.add(dataclasses.replace(etl(), next_fire_at=datetime(2025, 1, 1, 2, 30)), NOW)
    assert store.list() == []


@pytest.mark.parametrize("field", ["scheduled_for", "started_at", "finished_at"])
def test_naive_run_times_are_refused(store: ScheduleStore, field: str) -> None:
    good = run("etl", NOW, started_at=NOW, finished_at=NOW)
    with pytest.raises(ValueError, match=field):
        store.record_run(dataclasses.replace(good, **{field: datetime(2025, 1, 1)}))
    assert store.history("etl") == []


def test_the_column_type_itself_refuses_naive_datetimes(store: ScheduleStore, store_url: str) -> None:
    engine = sa.create_engine(store_url, poolclass=sa.pool.NullPool)
    try:
        with pytest.raises(sa.exc.StatementError) as caught, engine.begin() as conn:
            conn.execute(
                sa.insert(metadata.tables["runs"]).values(
                    schedule_name="etl", scheduled_for=datetime(2025, 1, 1), status="succeeded", attempt=1
                )
            )
        assert isinstance(caught.value.orig, ValueError)
    finally:
        engine.dispose()


# -- list -----------------------------------------------------------------------------------


def test_list_is_sorted_by_name_in_code_point_order(store: ScheduleStore) -> None:
    names = ["b", "a_1", "Z", "a-1", "a.1", "A", "a", "10", "9"]
    for name in names:
        store.add(Schedule(name=name, pipeline="p", trigger=HourlyTrigger(0)), NOW)
    assert [s.name for s in store.list()] == sorted(names)


def test_list_filters_by_tag_and_enabled(store: ScheduleStore) -> None:
    for schedule in all_samples():
        store.add(schedule, NOW)
    assert [s.name for s in store.list()] == ["Report.v2", "etl", "hourly_ping", "sync-15m"]
    assert [s.name for s in store.list(tag="a")] == ["etl", "sync-15m"]
    assert [s.name for s in store.list(tag="b")] == ["Report.v2"]
    assert store.list(tag="missing") == []
    assert [s.name for s in store.list(enabled=True)] == ["Report.v2", "etl", "hourly_ping"]
    assert [s.name for s in store.list(enabled=False)] == ["sync-15m"]
    assert [s.name for s in store.list(tag="a", enabled=True)] == ["etl"]
    assert [s.name for s in store.list(tag="a", enabled=False)] == ["sync-15m"]


def test_list_of_an_empty_store_is_empty(store: ScheduleStore) -> None:
    assert store.list() == []


# -- replace / remove / clear ---------------------------------------------------------------


def test_replace_keeps_created_at_and_bumps_version(store: ScheduleStore) -> None:
    store.add(etl(), NOW)
    changed = dataclasses.replace(
        etl(),
        trigger=IntervalTrigger(timedelta(hours=6), NOW),
        params={"day": 2},
        tags=("c",),
        enabled=False,
        pause_note="holiday",
        policy=Policy(retries=5, retry_backoff=timedelta(minutes=2)),
        source="schedules.yaml",
        next_fire_at=None,
        version=99,
        created_at=LATER,
    )
    returned = store.replace(changed, LATER)
    expected = dataclasses.replace(changed, created_at=NOW, updated_at=LATER, version=2)
    assert returned == expected
    assert store.get("etl") == expected
    assert_schedule_utc(store.get("etl"))
    assert store.replace(changed, LATER + timedelta(seconds=1)).version == 3


def test_replace_unknown_name_raises(store: ScheduleStore) -> None:
    with pytest.raises(ScheduleNotFound):
        store.replace(etl(), NOW)
    assert store.list() == []


def test_remove_deletes_the_schedule_and_keeps_its_history(store: ScheduleStore) -> None:
    store.add(etl(), NOW)
    store.add(ping(), NOW)
    store.record_run(run("etl", hours(1)))
    store.record_run(run("etl", hours(2), RunStatus.failed, error="boom"))
    store.remove("etl", NOW)
    with pytest.raises(ScheduleNotFound):
        store.get("etl")
    assert [s.name for s in store.list()] == ["hourly_ping"]
    assert [r.scheduled_for for r in store.history("etl")] == [hours(2), hours(1)]
    assert store.last_runs()["etl"].error == "boom"


def test_remove_unknown_name_raises(store: ScheduleStore) -> None:
    with pytest.raises(ScheduleNotFound, match="ghost"):
        store.remove("ghost", NOW)


def test_clear_removes_every_schedule_keeps_runs_and_counts(store: ScheduleStore) -> None:
    assert store.clear(NOW) == 0
    for schedule in all_samples():
        store.add(schedule, NOW)
    store.record_run(run("etl", hours(1)))
    assert store.clear(NOW) == 4
    assert store.list() == []
    assert len(store.history("etl")) == 1
    store.add(etl(), LATER)  # the name is free again
    assert store.get("etl").version == 1


# -- apply ----------------------------------------------------------------------------------


def test_apply_creates_updates_and_deletes(store: ScheduleStore) -> None:
    store.add(etl(), NOW)
    store.add(ping(), NOW)
    store.record_run(run("hourly_ping", hours(1)))
    new_etl = dataclasses.replace(etl(), params={"day": 7})
    store.apply(creates=[sync(), report()], updates=[new_etl], deletes=["hourly_ping"], now=LATER)
    assert store.list() == [
        as_stored(report(), LATER, LATER),
        as_stored(new_etl, NOW, LATER, 2),
        as_stored(sync(), LATER, LATER),
    ]
    assert len(store.history("hourly_ping")) == 1


def test_apply_is_all_or_nothing_when_a_create_collides(store: ScheduleStore) -> None:
    store.add(etl(), NOW)
    store.add(ping(), NOW)
    before = store.list()
    with pytest.raises(ScheduleExists, match="etl"):
        store.apply(
            creates=[sync(), dataclasses.replace(etl(), pipeline="x:y")],
            updates=[dataclasses.replace(ping(), description="changed")],
            deletes=[],
            now=LATER,
        )
    assert store.list() == before
    with pytest.raises(ScheduleExists, match=r"Report\.v2"):
        store.apply(creates=[report(), report()], updates=[], deletes=["hourly_ping"], now=LATER)
    assert store.list() == before


def test_apply_of_more_schedules_than_one_statement_names_changes_them_all_or_nothing(
    store: ScheduleStore,
) -> None:
    many = [dataclasses.replace(ping(), name=f"ping-{i:04d}") for i in range(1_200)]  # past 500 names a statement
    store.apply(creates=many, updates=[], deletes=[], now=NOW)
    assert [s.name for s in store.list()] == [s.name for s in many]
    edited = [dataclasses.replace(s, description="edited") for s in many[:700]]
    with pytest.raises(ScheduleNotFound, match="ping-9999"):
        store.apply(creates=[], updates=edited, deletes=[s.name for s in many[700:]] + ["ping-9999"], now=LATER)
    assert len(store.list()) == 1_200 and {s.description for s in store.list()} == {""}
    with pytest.raises(ScheduleExists, match="ping-1100"):
        store.apply(creates=[ping(), many[1_100]], updates=edited, deletes=[], now=LATER)
    assert len(store.list()) == 1_200 and {s.description for s in store.list()} == {""}
    store.apply(creates=[ping()], updates=edited, deletes=[s.name for s in many[700:]], now=LATER)
    stored = store.list()
    assert [s.name for s in stored] == ["hourly_ping"] + [s.name for s in many[:700]]
    assert {(s.description, s.version, s.created_at) for s in stored[1:]} == {("edited", 2, NOW)}


def test_apply_names_the_first_create_taken_in_its_order_and_treats_a_repeated_name_as_in_order(
    store: ScheduleStore,
) -> None:
    x, y, e = (dataclasses.replace(ping(), name=name) for name in ("x", "y", "e"))
    store.apply(creates=[x, y, e], updates=[], deletes=[], now=NOW)
    f = dataclasses.replace(ping(), name="f")
    with pytest.raises(ScheduleExists, match="'y'"):
        store.apply(creates=[y, x], updates=[], deletes=[], now=LATER)
    with pytest.raises(ScheduleExists, match="'e'"):
        store.apply(creates=[e, f, f], updates=[], deletes=[], now=LATER)
    with pytest.raises(ScheduleExists, match="'f'"):
        store.apply(creates=[f, f], updates=[], deletes=[], now=LATER)
    with pytest.raises(ScheduleNotFound, match="'x'"):  # the second time, it is gone
        store.apply(creates=[], updates=[], deletes=["x", "x"], now=LATER)
    assert [s.name for s in store.list()] == ["e", "x", "y"]
    one, two = (dataclasses.replace(x, description=text) for text in ("one", "two"))
    store.apply(creates=[], updates=[one, two], deletes=[], now=LATER)
    assert (store.get("x").description, store.get("x").version) == ("two", 3)


def test_a_row_whose_version_is_not_a_whole_number_is_listed_broken_and_apply_replaces_it(sqlite_url: str) -> None:
    with open_store(sqlite_url) as store:
        store.add(ping(), NOW)
        with store._db.write_engine.begin() as conn:  # a hand edit: SQLite keeps any value in any column
            conn.execute(sa.text("UPDATE schedules SET version = 'abc'"))
        (entry,) = store.entries()
        assert isinstance(entry, BrokenSchedule) and "version" in entry.reason
        store.apply(creates=[ping()], updates=[], deletes=["hourly_ping"], now=LATER)  # as apply_file does
        assert store.get("hourly_ping").version == 1


def test_apply_is_all_or_nothing_when_an_update_or_delete_is_missing(store: ScheduleStore) -> None:
    store.add(etl(), NOW)
    before = store.list()
    with pytest.raises(ScheduleNotFound, match="sync-15m"):
        store.apply(creates=[ping()], updates=[sync()], deletes=["etl"], now=LATER)
    assert store.list() == before
    with pytest.raises(ScheduleNotFound, match="ghost"):
        store.apply(
            creates=[ping()], updates=[dataclasses.replace(etl(), description="x")], deletes=["ghost"], now=LATER
        )
    assert store.list() == before


def test_apply_may_delete_and_recreate_a_name(store: ScheduleStore) -> None:
    store.add(etl(), NOW)
    reborn = dataclasses.replace(etl(), trigger=CronTrigger("0 3 * * *"))
    store.apply(creates=[reborn], updates=[], deletes=["etl"], now=LATER)
    assert store.get("etl") == as_stored(reborn, LATER, LATER, 1)


def test_apply_with_nothing_to_do(store: ScheduleStore) -> None:
    store.apply([], [], [], NOW)
    assert store.list() == []


# -- runs -----------------------------------------------------------------------------------


def test_record_run_round_trips_every_field(store: ScheduleStore) -> None:
    kolkata = timezone(timedelta(hours=5, minutes=30))
    recorded = Run(
        schedule_name="etl",
        scheduled_for=datetime(2025, 3, 30, 6, 0, tzinfo=kolkata),
        status=RunStatus.timed_out,
        attempt=3,
        started_at=datetime(2025, 3, 30, 6, 0, 1, 5, tzinfo=kolkata),
        finished_at=datetime(2025, 3, 30, 0, 45, 2, 999999, tzinfo=UTC),
        duration_seconds=901.25,
        error="Traceback (most recent call last):\n  ...\nTimeoutError: 15m",
        run_id="0192f3a4-run",
        worker="worker-host1-4242",
        host="host1.example.org",
        pid=4242,
        log_path="/var/log/flowyml/etl/2025-03-30T00:30:00Z.log",
    )
    store.record_run(recorded)
    (got,) = store.history("etl")
    assert got == recorded
    for value in (got.scheduled_for, got.started_at, got.finished_at):
        assert_utc(value)
    assert got.scheduled_for == NOW


def test_record_run_refuses_a_second_run_for_the_same_fire_time(store: ScheduleStore) -> None:
    store.record_run(run("etl", NOW))
    with pytest.raises(RunExists, match="etl"):
        store.record_run(run("etl", NOW.astimezone(BERLIN), RunStatus.failed))
    store.record_run(run("other", NOW))  # same instant, other schedule: fine
    store.record_run(run("etl", NOW + timedelta(microseconds=1)))  # microseconds count
    assert [r.status for r in store.history("etl")] == [RunStatus.succeeded, RunStatus.succeeded]
    assert len(store.history("etl")) == 2


def test_history_is_newest_first_and_limited(store: ScheduleStore) -> None:
    offsets = [3, -20, 7, 0, 1000, 5]
    for n in offsets:
        store.record_run(run("etl", hours(n)))
    store.record_run(run("noise", hours(2000)))
    assert [r.scheduled_for for r in store.history("etl")] == [hours(n) for n in sorted(offsets, reverse=True)]
    assert [r.scheduled_for for r in store.history("etl", limit=2)] == [hours(1000), hours(7)]
    assert store.history("unknown") == []
    with pytest.raises(ValueError):
        store.history("etl", limit=0)


def test_last_runs_gives_the_latest_run_of_each_schedule(store: ScheduleStore) -> None:
    store.record_run(run("etl", hours(1), RunStatus.failed))
    store.record_run(run("etl", hours(3), RunStatus.running))
    store.record_run(run("etl", hours(2), RunStatus.succeeded))
    store.record_run(run("sync-15m", hours(-1), RunStatus.skipped))
    store.record_run(run("removed", hours(9), RunStatus.abandoned))
    everything = store.last_runs()
    assert {name: (r.scheduled_for, r.status) for name, r in everything.items()} == {
        "etl": (hours(3), RunStatus.running),
        "sync-15m": (hours(-1), RunStatus.skipped),
        "removed": (hours(9), RunStatus.abandoned),
    }
    assert store.last_runs(["etl", "no-runs"]) == {"etl": everything["etl"]}
    assert store.last_runs([]) == {}
    many = [f"name-{i}" for i in range(700)] + ["sync-15m"]
    assert store.last_runs(many) == {"sync-15m": everything["sync-15m"]}
    for value in everything.values():
        assert_utc(value.scheduled_for)


settings_for_store = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
instants = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([UTC, BERLIN, ZoneInfo("America/St_Johns"), timezone(timedelta(hours=-9, minutes=-30))]),
)


@settings_for_store
@given(st.lists(instants, min_size=1, max_size=8, unique_by=lambda d: d.astimezone(UTC)))
def test_instants_round_trip_as_the_same_utc_instant_in_time_order(store: ScheduleStore, times: list[datetime]) -> None:
    name = f"prop-{uuid.uuid4().hex[:12]}"
    for at in times:
        store.record_run(run(name, at, started_at=at))
    got = store.history(name, limit=100)
    assert [r.scheduled_for for r in got] == sorted((t.astimezone(UTC) for t in times), reverse=True)
    for r in got:
        assert_utc(r.scheduled_for)
        assert r.started_at == r.scheduled_for


# -- schema and migrations ------------------------------------------------------------------


def test_a_fresh_database_is_migrated_to_head(store: ScheduleStore, store_url: str) -> None:
    engine = sa.create_engine(store_url, poolclass=sa.pool.NullPool)
    try:
        inspector = sa.inspect(engine)
        assert {"schedules", "runs", "workers", "alembic_version"} <= set(inspector.get_table_names())
        with engine.connect() as conn:
            assert conn.execute(
                sa.select(sa.column("version_num")).select_from(sa.table("alembic_version"))
            ).scalars().all() == [HEAD_REVISION]
        assert {fk["referred_table"] for fk in inspector.get_foreign_keys("runs")} == set()
        uniques = [u["column_names"] for u in inspector.get_unique_constraints("runs")]
        assert ["schedule_name", "scheduled_for"] in uniques
        assert any(ix["column_names"] == ["next_fire_at"] for ix in inspector.get_indexes("schedules"))
        (history_index,) = [ix for ix in inspector.get_indexes("runs") if ix["name"].endswith("_desc")]
        assert history_index["column_names"] == ["schedule_name", "scheduled_for"]
        if engine.dialect.name == "postgresql":
            assert history_index["column_sorting"] == {"scheduled_for": ("desc",)}
        for table, columns in TIME_COLUMNS.items():
            types = {c["name"]: c["type"] for c in inspector.get_columns(table)}
            for column in columns:
                assert isinstance(types[column], sa.DateTime), (table, column)
                if engine.dialect.name == "postgresql":
                    assert types[column].timezone, f"{table}.{column} is not TIMESTAMP WITH TIME ZONE"
    finally:
        engine.dispose()


def test_migrations_build_exactly_the_schema_the_code_expects(store: ScheduleStore, store_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = sa.create_engine(store_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_head_revision_constant_is_the_newest_migration() -> None:
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(alembic_config()).get_heads() == [HEAD_REVISION]


def test_upgrade_is_idempotent(store: ScheduleStore) -> None:
    store.add(etl(), NOW)
    assert store.upgrade() == HEAD_REVISION
    assert store.upgrade() == HEAD_REVISION
    assert store.get("etl") == as_stored(etl())


def test_upgrade_from_an_empty_database_after_a_downgrade(store: ScheduleStore, store_url: str) -> None:
    from alembic import command

    engine = sa.create_engine(store_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert not {"schedules", "runs", "workers"} & set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert store.upgrade() is None
    assert store.upgrade() == HEAD_REVISION
    store.add(etl(), NOW)
    assert store.list() == [as_stored(etl())]


def downgraded(store_url: str, revision: str, table: str) -> set[str]:
    """Downgrade the store's schema to ``revision`` (an operator running an older version's
    migrations); the columns ``table`` has then."""
    from alembic import command

    engine = sa.create_engine(store_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), revision)
            return {c["name"] for c in sa.inspect(conn).get_columns(table)}
    finally:
        engine.dispose()


def test_runs_stored_before_revision_0004_come_back_as_the_schedules_own(store: ScheduleStore, store_url: str) -> None:
    store.add(etl(), NOW)
    store.record_run(Run("etl", NOW, RunStatus.succeeded))
    assert "origin" not in downgraded(store_url, "0003", "runs")
    assert store.upgrade() == "0003"
    (run,) = store.history("etl")
    assert (run.origin, run.params, run.status) == (RunOrigin.schedule, None, RunStatus.succeeded)


def test_exclusions_are_stored_with_the_schedule_and_come_back_equal(store: ScheduleStore) -> None:
    excluding = dataclasses.replace(
        etl(),
        exclusions=Exclusions(
            holidays=HolidayCalendar(country="DE", subdivision="BY"),
            dates=(date(2026, 12, 24),),
            ranges=(DateRange(date(2026, 8, 3), date(2026, 8, 14)),),
            on_excluded=OnExcluded.previous_business_day,
        ),
    )
    store.add(excluding, NOW)
    assert store.get("etl") == as_stored(excluding)
    store.replace(dataclasses.replace(excluding, exclusions=Exclusions(holidays=HolidayCalendar(market="NYSE"))), NOW)
    assert store.get("etl").exclusions == Exclusions(holidays=HolidayCalendar(market="NYSE"))


def test_schedules_stored_before_revision_0005_exclude_nothing(store: ScheduleStore, store_url: str) -> None:
    store.add(etl(), NOW)
    assert "exclusions" not in downgraded(store_url, "0004", "schedules")
    assert store.upgrade() == "0004"
    assert store.get("etl") == as_stored(etl())
    assert store.get("etl").exclusions == NO_EXCLUSIONS


def test_a_schema_newer_than_the_code_is_refused(store_url: str) -> None:
    open_store(store_url).close()
    engine = sa.create_engine(store_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.update(sa.table("alembic_version", sa.column("version_num"))).values(version_num="9999"))
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match="9999"):
        open_store(store_url)


def test_opening_a_current_store_does_not_import_alembic(store: ScheduleStore, store_url: str) -> None:
    store.add(etl(), NOW)
    code = (
        "import sys\n"
        "from flowyml_sched.store import open_store\n"
        f"with open_store({store_url!r}) as s:\n"
        "    names = [x.name for x in s.list()]\n"
        "print(names, sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['etl'] []"


def test_a_closed_store_refuses_work(store_url: str) -> None:
    opened = open_store(store_url)
    opened.close()
    opened.close()
    with pytest.raises(StoreError, match="closed"):
        opened.list()


# -- finishing runs (group commit) ----------------------------------------------------------

WORKER = WorkerInfo("host:1:abc", "host", 1, NOW, NOW, NOW + timedelta(seconds=30), "alive")


def claimed_runs(store: ScheduleStore, *names: str) -> list[int]:
    """Store hourly schedules ``names`` due at NOW and claim them; their run row ids."""
    for name in names:
        store.add(dataclasses.replace(ping(), name=name, next_fire_at=NOW), NOW - timedelta(hours=1))
    return [claim.run_id for claim in store.claim_due(NOW, WORKER, len(names)).claims]


def status_of(store: ScheduleStore, name: str) -> RunStatus:
    return store.history(name, 1)[0].status


def test_a_claim_round_reports_the_earliest_due_time_after_it(store: ScheduleStore) -> None:
    store.add(dataclasses.replace(ping(), name="later", next_fire_at=NOW + timedelta(hours=2)), NOW)
    store.add(dataclasses.replace(ping(), name="a", next_fire_at=NOW), NOW - timedelta(hours=1))
    claimed = store.claim_due(NOW, WORKER, 10)
    assert [claim.schedule.name for claim in claimed.claims] == ["a"]
    assert claimed.next_due_at == store.next_due_at() == datetime(2025, 3, 30, 1, 5, tzinfo=UTC)  # "a" at :05


def test_a_claim_ahead_takes_fire_times_up_to_until_and_leaves_their_rows_unstarted(
    store: ScheduleStore,
) -> None:
    soon, beyond = NOW + timedelta(milliseconds=80), NOW + timedelta(milliseconds=150)
    store.add(dataclasses.replace(ping(), name="soon", next_fire_at=soon), NOW - timedelta(hours=1))
    store.add(dataclasses.replace(ping(), name="beyond", next_fire_at=beyond), NOW - timedelta(hours=1))
    claimed = store.claim_due(NOW, WORKER, 10, until=NOW + timedelta(milliseconds=100))
    assert [(c.schedule.name, c.scheduled_for) for c in claimed.claims] == [("soon", soon)]
    assert claimed.next_due_at == beyond
    (row,) = store.history("soon")
    assert (row.status, row.scheduled_for, row.started_at) == (RunStatus.running, soon, None)  # until it starts
    assert store.get("soon").next_fire_at == datetime(2025, 3, 30, 1, 5, tzinfo=UTC)  # hourly at :05


def test_finish_run_closes_its_own_running_row_once(store: ScheduleStore) -> None:
    store.heartbeat(WORKER)
    store.add(dataclasses.replace(ping(), name="a", next_fire_at=NOW), NOW - timedelta(hours=1))
    (claim,) = store.claim_due(NOW, WORKER, 1).claims
    run_id = claim.run_id
    assert store.start_attempt(claim, WORKER, started_at=NOW, run_uuid="u-1")
    later = NOW + timedelta(seconds=3)
    assert store.finish_run(run_id, WORKER, RunStatus.succeeded, later, pipeline_run_id="p-1")
    (run,) = store.history("a")
    assert (run.status, run.finished_at, run.duration_seconds, run.run_id) == (RunStatus.succeeded, later, 3.0, "p-1")
    assert not store.finish_run(run_id, WORKER, RunStatus.failed, later)  # no longer running: unchanged
    other = dataclasses.replace(WORKER, id="elsewhere:2:def")
    (second,) = claimed_runs(store, "b")
    assert not store.finish_run(second, other, RunStatus.succeeded, later)  # not its run
    assert status_of(store, "b") is RunStatus.running


def test_a_queued_finish_waits_for_the_next_write_transaction(store: ScheduleStore) -> None:
    first, second = claimed_runs(store, "a", "b")
    assert store.finish_run(first, WORKER, RunStatus.succeeded, NOW, wait=False)
    assert status_of(store, "a") is RunStatus.running  # queued, not written yet
    store.add(dataclasses.replace(ping(), name="c"), NOW)  # any write of this store carries it
    assert status_of(store, "a") is RunStatus.succeeded
    store.finish_run(second, WORKER, RunStatus.failed, NOW, error="boom", wait=False)
    store.finish_run(second, WORKER, RunStatus.succeeded, NOW, wait=False)  # a second finish of one run
    store.record_queued_finishes()
    (run,) = store.history("b")
    assert (run.status, run.error) == (RunStatus.failed, "boom")  # the first finish counts
    store.record_queued_finishes()  # nothing queued: nothing happens


def test_finishes_from_many_threads_are_all_recorded(store: ScheduleStore) -> None:
    names = [f"job-{i}" for i in range(40)]
    run_ids = claimed_runs(store, *names)
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda r=r: results.append(store.finish_run(r, WORKER, RunStatus.succeeded, NOW)))
        for r in run_ids
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [True] * len(names)
    assert {status_of(store, name) for name in names} == {RunStatus.succeeded}


# -- change watch ---------------------------------------------------------------------------


def changed_within(watch, timeout: float = 10.0) -> bool:
    """Ask ``watch`` until it says changed (a PostgreSQL notification travels after the commit)."""
    deadline = time.monotonic() + timeout
    while not watch.changed():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_change_watch_says_changed_first_then_only_after_a_write_by_another_store(
    store: ScheduleStore, store_url: str
) -> None:
    watch = store.change_watch()
    assert watch.changed()
    assert not watch.changed()
    with open_store(store_url) as other:
        other.add(etl(), NOW)
        assert changed_within(watch)
        assert not watch.changed()
        other.remove("etl", NOW)
    assert changed_within(watch)
    assert not watch.changed()


def wakes_within(watch, timeout: float = 10.0) -> bool:
    """Whether the watch's descriptor turns readable (a sleeping worker would wake) in time."""
    fd = watch.fileno()
    assert fd is not None, "this store's watch gives nothing to sleep on"
    return bool(select.select([fd], [], [], timeout)[0])


def test_change_watch_descriptor_wakes_a_sleeper_on_another_stores_write_until_asked(
    store: ScheduleStore, store_url: str
) -> None:
    watch = store.change_watch()
    watch.changed()  # opens the watch (inotify on SQLite, LISTEN on PostgreSQL)
    assert not wakes_within(watch, 0)
    with open_store(store_url) as other:
        other.add(etl(), NOW)
        assert wakes_within(watch)
        assert watch.changed()
        assert not wakes_within(watch, 0)  # consumed by changed(): a sleeper sleeps again
        other.remove("etl", NOW)
        assert wakes_within(watch)
        assert watch.changed()


def test_change_watch_of_an_in_memory_store_gives_no_descriptor_so_the_worker_polls() -> None:
    with open_store("sqlite://") as memory:
        watch = memory.change_watch()
        watch.changed()
        assert watch.fileno() is None


def test_change_watch_sees_the_stores_own_writes(store: ScheduleStore) -> None:
    watch = store.change_watch()
    watch.changed()
    store.add(etl(), NOW)
    assert changed_within(watch)


def test_change_watch_of_an_in_memory_store_always_says_changed() -> None:
    with open_store("sqlite://") as memory:
        watch = memory.change_watch()
        assert watch.changed() and watch.changed()


def test_postgresql_change_watch_hears_sql_written_by_hand(postgresql_url: str) -> None:
    with open_store(postgresql_url) as opened:
        opened.add(etl(), NOW)
        watch = opened.change_watch()
        watch.changed()
        engine = sa.create_engine(postgresql_url, poolclass=sa.pool.NullPool)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE schedules SET enabled = false"))
        finally:
            engine.dispose()
        assert changed_within(watch)


def test_postgresql_change_watch_survives_losing_its_connection(postgresql_url: str) -> None:
    name = f"watch-test-{os.getpid()}-{time.monotonic_ns()}"
    url = sa.make_url(postgresql_url).update_query_dict({"application_name": name})
    with open_store(url.render_as_string(hide_password=False)) as opened:
        watch = opened.change_watch()
        watch.changed()
        engine = sa.create_engine(postgresql_url, poolclass=sa.pool.NullPool)
        try:
            with engine.begin() as conn:
                killed = conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name AND query ILIKE 'LISTEN%'"
                    ),
                    {"name": name},
                ).all()
        finally:
            engine.dispose()
        assert killed == [(True,)]
        assert changed_within(watch)  # the lost connection counts as a change
        assert not watch.changed()  # listening again, on a new connection
        opened.add(etl(), NOW)
        assert changed_within(watch)


# -- SQLite specifics -----------------------------------------------------------------------


def sqlite_path(url: str) -> Path:
    return Path(sa.make_url(url).database or "")


def test_sqlite_change_watch_woken_by_a_commits_wal_writes_looks_again_once_it_shows(sqlite_url: str) -> None:
    # a commit writes its WAL frames (inotify events) before it shows; a watch that looked in
    # between said "unchanged" and slept through the change (found by a worker test), or saw
    # an earlier commit's change and missed the one in flight (found by a breaker)
    with open_store(sqlite_url) as opened:
        watch = opened.change_watch()
        watch.changed()
        writer = sqlite3.connect(sqlite_path(sqlite_url), isolation_level=None)
        try:
            writer.execute("CREATE TABLE filler (blob BLOB)")  # a commit that shows at once
            writer.execute("PRAGMA cache_size = 1")  # spill to the WAL before the commit
            writer.execute("BEGIN IMMEDIATE")  # then one that does not yet (both before the watch looks)
            writer.execute("INSERT INTO filler VALUES (randomblob(200000))")
            assert wakes_within(watch)
            assert watch.changed()  # may have: the writer holds its lock past the watch's short wait
            assert watch.fileno() is not None  # and a commit after it still wakes the sleeper
            assert watch.recheck() is not None  # so the sleeper asks again soon, until the lock is free
            writer.execute("COMMIT")
            assert watch.changed()  # the commit that was in flight
            assert watch.recheck() is None
            assert not watch.changed()
        finally:
            writer.close()


def test_sqlite_file_is_created_private_in_new_directories_and_in_wal_mode(sqlite_url: str) -> None:
    path = sqlite_path(sqlite_url)
    assert not path.parent.exists()
    with open_store(sqlite_url) as opened:
        opened.add(etl(), NOW)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for sidecar in (Path(f"{path}-wal"), Path(f"{path}-shm")):
            if sidecar.exists():
                assert stat.S_IMODE(sidecar.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_new_parent_directories_are_private(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'one' / 'two' / 'schedules.db'}"):
        pass
    for directory in (tmp_path / "one", tmp_path / "one" / "two"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_sqlite_in_memory_store_works() -> None:
    with open_store("sqlite://") as opened:
        opened.add(etl(), NOW)
        assert opened.list() == [as_stored(etl())]


def test_sqlite_stores_utc_text_in_time_order(sqlite_url: str) -> None:
    with open_store(sqlite_url) as opened:
        opened.record_run(run("etl", datetime(2025, 3, 30, 3, 0, tzinfo=BERLIN)))
    with sqlite3.connect(sqlite_path(sqlite_url)) as raw:
        assert raw.execute("SELECT scheduled_for FROM runs").fetchone()[0] == "2025-03-30 01:00:00.000000"


def test_sqlite_corrupt_file_gives_store_error_naming_the_path(sqlite_url: str) -> None:
    path = sqlite_path(sqlite_url)
    path.parent.mkdir(parents=True)
    path.write_bytes(os.urandom(64) + b"this is not an SQLite database" * 200)
    with pytest.raises(StoreError) as caught:
        open_store(sqlite_url)
    message = str(caught.value)
    assert str(path) in message
    assert "not an SQLite database" in message
    assert "Traceback" not in message and "sqlalchemy" not in message.lower()
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_sqlite_store_corrupted_while_in_use_gives_store_error(sqlite_url: str) -> None:
    opened = open_store(sqlite_url)
    try:
        opened.close()
        path = sqlite_path(sqlite_url)
        path.write_bytes(b"\0garbage" * 4096)
        with pytest.raises(StoreError, match=str(path)):
            open_store(sqlite_url)
    finally:
        opened.close()


def test_sqlite_path_under_a_regular_file_gives_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    target = blocker / "sub" / "schedules.db"
    with pytest.raises(StoreError, match=str(target)):
        open_store(f"sqlite:///{target}")


def test_sqlite_path_that_is_a_directory_gives_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="directory"):
        open_store(f"sqlite:///{tmp_path}")


def _open_as_unprivileged(urls: list[str]) -> list[str]:
    """Try to open each URL without write permission; return the StoreError messages.

    As root (who ignores permission bits) the attempt runs in a forked child that drops
    to uid/gid 65534 (nobody) first; otherwise in this process.
    """
    if os.geteuid() != 0:
        messages = []
        for url in urls:
            with pytest.raises(StoreError) as caught:
                open_store(url)
            messages.append(str(caught.value))
        return messages
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no pytest machinery from here on
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            messages = []
            for url in urls:
                try:
                    open_store(url).close()
                    messages.append("OPENED")
                except StoreError as exc:
                    messages.append(str(exc))
            os.write(write_end, json.dumps(messages).encode())
            status = 0
        except BaseException as exc:
            os.write(write_end, json.dumps([f"CHILD FAILED: {exc!r}"]).encode())
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        payload = reader.read()
    os.waitpid(pid, 0)
    return json.loads(payload)


def test_sqlite_unwritable_directory_gives_store_error(sqlite_url: str) -> None:
    open_store(sqlite_url).close()  # load every module now, before dropping privileges
    base = Path(tempfile.mkdtemp(prefix="flowyml-ro-"))
    try:
        existing = base / "existing.db"
        with open_store(f"sqlite:///{existing}") as made:
            made.add(etl(), NOW)
        base.chmod(0o555)
        new_file = base / "new.db"
        new_dir = base / "sub" / "new.db"
        messages = _open_as_unprivileged([f"sqlite:///{new_file}", f"sqlite:///{new_dir}", f"sqlite:///{existing}"])
        assert len(messages) == 3, messages
        for message, path in zip(messages, (new_file, new_dir, existing), strict=True):
            assert message.startswith(f"cannot use the schedule store at {path}:"), message
    finally:
        base.chmod(0o700)
        for child in sorted(base.rglob("*"), reverse=True):
            child.unlink() if not child.is_dir() else child.rmdir()
        base.rmdir()


def test_unparsable_and_unsupported_urls_give_store_error() -> None:
    with pytest.raises(StoreError, match="not a database URL"):
        open_store("just some words")
    with pytest.raises(StoreError, match="unsupported database 'mysql'"):
        open_store("mysql://user:hunter2@localhost/db")
    try:
        open_store("mysql://user:hunter2@localhost/db")
    except StoreError as exc:
        assert "hunter2" not in str(exc)


# -- PostgreSQL specifics -------------------------------------------------------------------


def test_postgresql_unreachable_server_gives_store_error_without_password() -> None:
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        open_store("postgresql+psycopg://flowyml:s3cret-pw@127.0.0.1:1/schedules")
    message = str(caught.value)
    assert "s3cret-pw" not in message
    assert "postgresql+psycopg://flowyml@127.0.0.1:1/schedules" in message
    assert "cannot connect to the server" in message
    assert time.monotonic() - started < 15


def test_postgresql_plain_scheme_uses_psycopg(postgresql_url: str) -> None:
    plain = postgresql_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with open_store(plain) as opened:
        assert opened.dialect == "postgresql"
        opened.add(etl(), NOW)
        assert opened.get("etl") == as_stored(etl())


# -- fenced starts, durable retries, every fire time a row ----------------------------------

OTHER = dataclasses.replace(
    WORKER, id="elsewhere:2:def", host="elsewhere", pid=2, lease_expires_at=NOW + timedelta(hours=1)
)
"""Another worker, whose lease outlasts WORKER's."""


def claim_one(store: ScheduleStore, name: str = "a", worker: WorkerInfo = WORKER, **policy: Any) -> Claim:
    """Store an hourly schedule ``name`` due at NOW and claim it for ``worker`` (heartbeat first)."""
    store.heartbeat(worker)
    schedule = dataclasses.replace(ping(), name=name, next_fire_at=NOW, policy=Policy(**policy))
    store.add(schedule, NOW - timedelta(hours=1))
    (claim,) = store.claim_due(NOW, worker, 1).claims
    return claim


def test_a_claimed_run_has_no_start_until_its_fenced_start_which_succeeds_once(store: ScheduleStore) -> None:
    claim = claim_one(store)
    assert store.history("a")[0].started_at is None
    assert not store.start_attempt(claim, OTHER, started_at=NOW, run_uuid="x")  # not its claim
    assert store.start_attempt(claim, WORKER, started_at=NOW, run_uuid="u-1", log_path="/l")
    assert not store.start_attempt(claim, WORKER, started_at=NOW, run_uuid="u-2")  # an attempt starts once
    (run,) = store.history("a")
    assert (run.status, run.started_at, run.run_id, run.log_path) == (RunStatus.running, NOW, "u-1", "/l")


def test_a_fenced_start_is_refused_once_another_worker_declared_the_owner_dead(store: ScheduleStore) -> None:
    claim = claim_one(store)
    store.heartbeat(OTHER)
    assert [r.id for r in store.reap_abandoned(WORKER.lease_expires_at + timedelta(seconds=1))] == [claim.run_id]
    assert not store.start_attempt(claim, WORKER, started_at=NOW, run_uuid="u")
    assert store.heartbeat(WORKER).lease_kept is False  # back from its stall: alive again, runs gone
    assert not store.start_attempt(claim, WORKER, started_at=NOW, run_uuid="u")  # and still not its run
    assert status_of(store, "a") is RunStatus.abandoned


def test_a_fenced_start_is_refused_after_the_owners_lease_ran_out_even_before_a_reap(store: ScheduleStore) -> None:
    claim = claim_one(store)
    assert not store.start_attempt(claim, WORKER, started_at=WORKER.lease_expires_at, run_uuid="u")
    assert store.start_attempt(claim, WORKER, started_at=WORKER.lease_expires_at - timedelta(seconds=1), run_uuid="u")


def test_a_reaped_run_with_retries_left_stores_its_retry_and_any_live_worker_takes_it_once(
    store: ScheduleStore,
) -> None:
    claim = claim_one(store, retries=1)
    assert store.start_attempt(claim, WORKER, started_at=NOW, run_uuid="u")
    store.heartbeat(OTHER)
    reaped_at = WORKER.lease_expires_at + timedelta(seconds=1)
    (reaped,) = store.reap_abandoned(reaped_at)
    assert (reaped.status, reaped.retry_at) == (RunStatus.abandoned, reaped_at)
    assert store.history("a")[0].retry_at == reaped_at  # stored with the abandonment, not in a worker's memory
    assert store.next_due_at() == reaped_at  # the hourly schedule's next fire time is later
    (retry,) = store.claim_due(reaped_at, OTHER, 10).claims
    assert (retry.run_id, retry.attempt, retry.retry_of, retry.scheduled_for) == (
        claim.run_id,
        2,
        RunStatus.abandoned,
        NOW,
    )
    assert store.claim_due(reaped_at, OTHER, 10).claims == []  # taken once
    (run,) = store.history("a")
    assert (run.status, run.attempt, run.worker, run.retry_at, run.started_at) == (
        RunStatus.running,
        2,
        OTHER.id,
        None,
        None,
    )
    assert run.error is not None and run.error.startswith(f"attempt 1: abandoned: worker {WORKER.id} stopped")


def test_a_reaped_run_without_retries_left_is_abandoned_with_no_retry(store: ScheduleStore) -> None:
    claim = claim_one(store, retries=0)
    assert store.start_attempt(claim, WORKER, started_at=NOW, run_uuid="u")
    (reaped,) = store.reap_abandoned(WORKER.lease_expires_at + timedelta(seconds=1))
    assert (reaped.status, reaped.retry_at) == (RunStatus.abandoned, None)


@pytest.mark.parametrize("attempt", [1, 2])
def test_a_reaped_attempt_that_never_started_is_handed_over_as_it_is_spending_no_retry(
    store: ScheduleStore, attempt: int
) -> None:
    claim = claim_one(store, retries=attempt - 1)  # none left after this attempt
    if attempt == 2:  # attempt 1 ran and failed; its retry was taken, not started
        assert store.start_attempt(claim, WORKER, started_at=NOW, run_uuid="u")
        store.finish_run(claim.run_id, WORKER, RunStatus.failed, NOW, error="boom", retry_at=NOW)
        assert store.retry_run(claim.run_id, WORKER, 1) == (2, RunStatus.failed)
    reaped_at = WORKER.lease_expires_at + timedelta(seconds=1)
    (reaped,) = store.reap_abandoned(reaped_at)
    assert (reaped.status, reaped.retry_at) == (RunStatus.abandoned, reaped_at)
    assert reaped.error is not None and reaped.error.endswith("before starting it")
    store.heartbeat(OTHER)
    (taken,) = store.claim_due(reaped_at, OTHER, 10).claims
    assert (taken.attempt, taken.retry_of) == (attempt, None if attempt == 1 else RunStatus.failed)
    (run,) = store.history("a")
    assert (run.status, run.attempt, run.worker) == (RunStatus.running, attempt, OTHER.id)
    assert run.error == (None if attempt == 1 else "attempt 1: failed: boom")


def test_a_live_workers_own_pending_retry_is_left_to_it_unless_it_lets_it_go(store: ScheduleStore) -> None:
    claim = claim_one(store, retries=1)
    store.heartbeat(OTHER)
    assert store.start_attempt(claim, WORKER, started_at=NOW, run_uuid="u")
    assert store.finish_run(claim.run_id, WORKER, RunStatus.failed, NOW, error="boom", retry_at=NOW)
    (run,) = store.history("a")
    assert (run.status, run.retry_at) == (RunStatus.failed, NOW)  # the outcome, with its retry
    assert store.claim_due(NOW, OTHER, 10).claims == []  # its owner lives
    assert store.claim_due(NOW, WORKER, 10, kept=[claim.run_id]).claims == []  # the owner takes it itself
    assert store.retry_run(claim.run_id, WORKER, 1) == (2, RunStatus.failed)
    # once: asked again (an answer the connection lost) it is the same attempt, not a third,
    # and no other worker takes it
    assert store.retry_run(claim.run_id, WORKER, 1) == (2, RunStatus.failed)
    assert store.retry_run(claim.run_id, OTHER, 1) is None
    assert store.history("a")[0].attempt == 2


def test_a_worker_declared_dead_during_its_retry_backoff_cannot_take_its_retry_and_another_does(
    store: ScheduleStore,
) -> None:
    # it stalled in the backoff and was declared dead: a retry it took now would be running
    # under a dead id that nobody reaps again, and its fenced start would refuse it for ever
    claim = claim_one(store, retries=1)
    assert store.start_attempt(claim, WORKER, started_at=NOW, run_uuid="u")
    assert store.finish_run(claim.run_id, WORKER, RunStatus.failed, NOW, error="boom", retry_at=NOW)
    later = WORKER.lease_expires_at + timedelta(seconds=1)
    store.heartbeat(dataclasses.replace(OTHER, heartbeat_at=later, lease_expires_at=later + timedelta(seconds=30)))
    store.reap_abandoned(later)
    assert {w.id: w.status for w in store.list_workers()}[WORKER.id] == "dead"
    assert store.retry_run(claim.run_id, WORKER, 1) is None
    (run,) = store.history("a")
    assert (run.status, run.attempt, run.worker, run.retry_at) == (RunStatus.failed, 1, WORKER.id, NOW)
    (taken,) = store.claim_due(later, OTHER, 10).claims
    assert (taken.run_id, taken.attempt, taken.owner) == (claim.run_id, 2, OTHER.id)


def test_a_stopped_workers_pending_retry_is_taken_by_another(store: ScheduleStore) -> None:
    claim = claim_one(store, retries=1)
    store.heartbeat(OTHER)
    assert store.start_attempt(claim, WORKER, started_at=NOW, run_uuid="u")
    store.finish_run(claim.run_id, WORKER, RunStatus.timed_out, NOW, retry_at=NOW + timedelta(seconds=5))
    store.heartbeat(dataclasses.replace(WORKER, status="stopped"))
    assert store.claim_due(NOW, OTHER, 10).claims == []  # not due yet
    (retry,) = store.claim_due(NOW + timedelta(seconds=5), OTHER, 10).claims
    assert (retry.attempt, retry.retry_of) == (2, RunStatus.timed_out)


@pytest.mark.parametrize("change", ["removed", "paused"])
def test_a_pending_retry_of_a_removed_or_paused_schedule_is_dropped_and_the_row_keeps_its_outcome(
    store: ScheduleStore, change: str
) -> None:
    claim_one(store, retries=1)
    store.heartbeat(OTHER)
    reaped_at = WORKER.lease_expires_at + timedelta(seconds=1)
    store.reap_abandoned(reaped_at)
    if change == "removed":
        store.remove("a", reaped_at)
    else:
        store.replace(dataclasses.replace(store.get("a"), enabled=False, next_fire_at=None), reaped_at)
    assert store.claim_due(reaped_at, OTHER, 10).claims == []
    (run,) = store.history("a")
    assert (run.status, run.retry_at, run.attempt) == (RunStatus.abandoned, None, 1)
    assert run.error is not None and run.error.endswith(f"no retry: the schedule was {change}")
    assert store.next_due_at() is None


def test_history_pruning_keeps_a_row_with_a_pending_retry(store: ScheduleStore) -> None:
    claim_one(store, retries=1)
    store.reap_abandoned(WORKER.lease_expires_at + timedelta(seconds=1))
    assert store.prune_history(keep=None, older_than=NOW + timedelta(days=1)) == 0
    assert store.history("a")[0].retry_at is not None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda store, s, now: store.replace(dataclasses.replace(s, enabled=False, next_fire_at=None), now), "paused"),
        (
            lambda store, s, now: store.replace(
                dataclasses.replace(s, trigger=HourlyTrigger(30), next_fire_at=now + timedelta(minutes=20)), now
            ),
            "edited",
        ),
        (lambda store, s, now: store.remove(s.name, now), "removed"),
        (lambda store, s, now: store.clear(now), "removed"),
        (lambda store, s, now: store.apply([], [], [s.name], now), "removed"),
    ],
    ids=["pause", "edit", "remove", "clear", "apply-delete"],
)
def test_fire_times_due_but_unclaimed_when_a_schedule_changes_are_recorded_missed(
    store: ScheduleStore, change: Callable[..., Any], reason: str
) -> None:
    stored = store.add(dataclasses.replace(ping(), name="a", next_fire_at=NOW), NOW - timedelta(hours=1))
    now = NOW + timedelta(hours=2, minutes=10)  # 02:40: due were NOW (00:30, as stored), 01:05 and 02:05
    change(store, stored, now)
    runs = store.history("a", 10)
    assert [r.scheduled_for for r in runs] == [NOW + timedelta(minutes=95), NOW + timedelta(minutes=35), NOW]
    assert {(r.status, r.error) for r in runs} == {
        (RunStatus.missed, f"missed: the schedule was {reason} before a worker claimed it")
    }


def test_an_edit_that_keeps_the_timing_records_nothing_missed(store: ScheduleStore) -> None:
    stored = store.add(dataclasses.replace(ping(), name="a", next_fire_at=NOW), NOW - timedelta(hours=1))
    store.replace(dataclasses.replace(stored, description="new words"), NOW + timedelta(hours=1))
    assert store.history("a") == []  # still due: a worker claims it


def test_a_worker_declared_dead_claims_nothing_until_it_goes_on_under_a_new_id(store: ScheduleStore) -> None:
    store.heartbeat(WORKER)
    store.add(dataclasses.replace(ping(), name="a", next_fire_at=NOW), NOW - timedelta(hours=1))
    store.reap_abandoned(WORKER.lease_expires_at + timedelta(seconds=1))  # it stalled: declared dead
    assert store.claim_due(NOW, WORKER, 10).claims == []  # its claims would have nobody to reap them
    assert store.heartbeat(WORKER).lease_kept is False
    assert {w.id: w.status for w in store.list_workers()}[WORKER.id] == "dead"  # stays dead
    reborn = dataclasses.replace(WORKER, id="host:1:new")
    assert store.heartbeat(reborn).lease_kept
    assert [c.owner for c in store.claim_due(NOW, reborn, 10).claims] == [reborn.id]


def test_opening_an_empty_postgresql_database_only_to_read_creates_nothing(postgresql_url: str) -> None:
    # read-only commands (list, show, history) never create a store, on PostgreSQL as on SQLite
    with pytest.raises(StoreMissing, match="there is no store here yet"):
        open_store(postgresql_url, create=False)
    engine = sa.create_engine(postgresql_url, poolclass=sa.pool.NullPool)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
    open_store(postgresql_url).close()  # one that may create does


def _waiting_on_a_lock(engine: sa.Engine, count: int) -> bool:
    """Whether ``count`` sessions of this database wait on a lock (seen in pg_stat_activity)."""
    with engine.connect() as conn:
        return (
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            ).scalar()
            >= count
        )


def _eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_start_held_up_in_the_database_while_its_worker_is_declared_dead_is_reaped_as_started(
    postgresql_url: str,
) -> None:
    # the breaker's race on PostgreSQL: a worker's fenced start waits on a row lock (here the
    # test's) while another worker declares it dead. The reaper read the run unstarted and
    # handed it over after the start had committed: a retries-0 fire time ran twice
    store = open_store(postgresql_url)
    other = open_store(postgresql_url)
    admin = sa.create_engine(postgresql_url, poolclass=sa.pool.NullPool)
    try:
        claim = claim_one(store)  # retries 0
        holder = admin.connect()
        holder.execute(sa.text("SELECT id FROM runs WHERE id = :id FOR UPDATE"), {"id": claim.run_id})
        results: dict[str, Any] = {}
        start = threading.Thread(
            target=lambda: results.update(started=store.start_attempt(claim, WORKER, started_at=NOW, run_uuid="u"))
        )
        start.start()
        _eventually(lambda: _waiting_on_a_lock(admin, 1), "the start to wait on the run's row")
        later = WORKER.lease_expires_at + timedelta(seconds=1)
        reap = threading.Thread(target=lambda: results.update(reaped=other.reap_abandoned(later)))
        reap.start()
        _eventually(lambda: _waiting_on_a_lock(admin, 2), "the reaper to wait too")
        holder.rollback()  # the start goes on, then the reaper
        start.join(30)
        reap.join(30)
        holder.close()
        assert results["started"] is True
        (run,) = store.history("a")
        assert run.status is RunStatus.abandoned and run.started_at == NOW  # it started: it ran
        assert run.retry_at is None  # no hand-over, no retry left: it must not run again
        assert "before starting it" not in (run.error or "")
        assert other.claim_due(later, OTHER, 10).claims == []
    finally:
        store.close()
        other.close()
        admin.dispose()
