"""Use cases over a real store: edits and applies keep fire times that are due but unclaimed."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from flowyml_sched.application import Scheduler
from flowyml_sched.application.health import lock_warnings
from flowyml_sched.model import Schedule, WorkerInfo
from flowyml_sched.store import ScheduleStore
from flowyml_sched.triggers import DailyTrigger

UTC = timezone.utc
CREATED = datetime(2026, 1, 9, 12, 0, tzinfo=UTC)
DUE = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)  # the first fire of a daily 09:00 UTC schedule


def at(store: ScheduleStore, now: datetime) -> Scheduler:
    """The use cases on ``store`` with the clock stopped at ``now``."""
    return Scheduler(store, clock=lambda: now)


def add_daily(store: ScheduleStore) -> None:
    schedule = Schedule("nightly", "pipelines_for_tests:ok", DailyTrigger(9, 0), "UTC")
    at(store, CREATED).add_schedule(schedule, check_pipeline=False)


def test_editing_only_the_description_keeps_a_due_unclaimed_fire_time(store: ScheduleStore) -> None:
    add_daily(store)
    edited = at(store, DUE + timedelta(seconds=5)).edit_schedule("nightly", {"description": "only words"})
    assert edited.next_fire_at == DUE  # still due: the worker will claim it


def test_editing_the_trigger_moves_the_next_fire_time_past_now(store: ScheduleStore) -> None:
    add_daily(store)
    now = DUE + timedelta(seconds=5)
    edited = at(store, now).edit_schedule("nightly", {"trigger": DailyTrigger(10, 0)})
    assert edited.next_fire_at == datetime(2026, 1, 10, 10, 0, tzinfo=UTC)


def test_resume_starts_after_now_not_in_the_paused_period(store: ScheduleStore) -> None:
    add_daily(store)
    at(store, CREATED).pause("nightly", "maintenance")
    resumed = at(store, DUE + timedelta(days=2, hours=1)).resume("nightly").entry
    assert resumed.next_fire_at == datetime(2026, 1, 13, 9, 0, tzinfo=UTC)


SPEC = """version: 1
schedules:
  - name: {name}
    pipeline: pipelines_for_tests:ok
    daily: "09:00"
"""


def test_prune_knows_a_file_by_its_absolute_path_from_any_directory(
    store: ScheduleStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for folder, name in (("a", "from-a"), ("b", "from-b")):
        (tmp_path / folder / "y").mkdir(parents=True)
        (tmp_path / folder / "y" / "s.yaml").write_text(SPEC.format(name=name))
        monkeypatch.chdir(tmp_path / folder)
        at(store, CREATED).apply_file("y/s.yaml", prune=True, dry_run=False, check_pipelines=False)
    assert [s.name for s in store.list()] == ["from-a", "from-b"]
    monkeypatch.chdir(tmp_path)
    plan = at(store, CREATED).apply_file(
        os.fspath(tmp_path / "a" / "y" / "s.yaml"), prune=True, dry_run=True, check_pipelines=False
    )
    assert not plan.deletes and [u.name for u in plan.unchanged] == ["from-a"]


# -- runs asked for: what is refused, and nothing stored then --------------------------------


@pytest.mark.parametrize(
    ("start", "end", "max_runs", "message"),
    [
        (DUE, DUE, 1000, "is not before the end"),
        (DUE + timedelta(days=1), DUE, 1000, "is not before the end"),
        (DUE, DUE + timedelta(days=30), 1000, "is after now"),
        (DUE, DUE + timedelta(days=4), 3, "holds more than 3 fire times of nightly"),
    ],
)
def test_a_backfill_refuses_a_range_it_cannot_take_and_stores_nothing(
    store: ScheduleStore, start: datetime, end: datetime, max_runs: int, message: str
) -> None:
    from flowyml_sched.errors import UsageError

    add_daily(store)
    with pytest.raises(UsageError, match=message):
        at(store, DUE + timedelta(days=5)).backfill("nightly", start, end, max_runs=max_runs)
    assert store.history("nightly") == []


def test_a_backfill_of_exactly_max_fire_times_is_taken(store: ScheduleStore) -> None:
    add_daily(store)
    done = at(store, DUE + timedelta(days=5)).backfill("nightly", DUE, DUE + timedelta(days=3), max_runs=3)
    assert done.queued == [DUE + timedelta(days=n) for n in range(3)]


def test_a_backfill_asks_only_for_the_fire_times_the_schedules_exclusions_leave(store: ScheduleStore) -> None:
    from flowyml_sched.exclusions import Exclusions, HolidayCalendar, OnExcluded

    christmas = Exclusions(
        holidays=HolidayCalendar(country="GB", subdivision="ENG"), on_excluded=OnExcluded.next_business_day
    )
    schedule = Schedule("nightly", "pipelines_for_tests:ok", DailyTrigger(9, 0), "UTC", exclusions=christmas)
    at(store, datetime(2026, 12, 1, tzinfo=UTC)).add_schedule(schedule, check_pipeline=False)
    start, end = datetime(2026, 12, 24, tzinfo=UTC), datetime(2026, 12, 30, tzinfo=UTC)

    done = at(store, datetime(2027, 1, 5, tzinfo=UTC)).backfill("nightly", start, end)

    # Christmas (Fri 25), Boxing Day (Sat 26) and its substitute (Mon 28) move to Tue 29, merging
    # with its own fire time; Sunday 27 is no holiday, so it runs
    assert [f.at.day for f in done.fire_times] == [24, 27, 29]
    assert done.queued == [datetime(2026, 12, d, 9, 0, tzinfo=UTC) for d in (24, 27, 29)]


def test_asking_for_runs_of_an_unknown_schedule_or_with_bad_params_stores_nothing(store: ScheduleStore) -> None:
    from flowyml_sched.errors import InvalidParams, ScheduleNotFound
    from flowyml_sched.model import MAX_PARAMS_DEPTH

    add_daily(store)
    scheduler = at(store, DUE + timedelta(days=1))
    with pytest.raises(ScheduleNotFound):
        scheduler.trigger("nope")
    with pytest.raises(ScheduleNotFound):
        scheduler.backfill("nope", DUE, DUE + timedelta(hours=1))
    deep: object = 1
    for _ in range(MAX_PARAMS_DEPTH + 1):
        deep = [deep]
    with pytest.raises(InvalidParams, match="nightly"):
        scheduler.trigger("nightly", {"deep": deep})
    assert store.history("nightly") == [] and store.history("nope") == []


def test_waiting_for_a_run_reports_each_change_and_ends_after_its_last_retry(
    store: ScheduleStore, store_url: str
) -> None:
    import sqlalchemy as sa

    from flowyml_sched.model import RunStatus
    from flowyml_sched.store.schema import runs

    add_daily(store)
    scheduler = at(store, DUE + timedelta(hours=1, microseconds=7))
    run = scheduler.trigger("nightly")
    later = DUE + timedelta(hours=2)
    steps = iter(
        [  # what workers write between two reads of the waiting front end
            {"status": "running", "worker": "w1", "retry_at": None},
            {"status": "running", "worker": "w1", "started_at": later},
            {"status": "failed", "error": "boom", "retry_at": later},
            {"status": "failed", "error": "boom", "retry_at": later},  # no change: not reported again
            {
                "status": "running",
                "attempt": 2,
                "retry_at": None,
                "started_at": None,
                "error": "attempt 1: failed: boom",
            },
            {"status": "succeeded", "started_at": later, "error": "attempt 1: failed: boom"},
        ]
    )
    engine = sa.create_engine(store_url, poolclass=sa.pool.NullPool)

    def worker_moves(_seconds: float) -> None:
        with engine.begin() as conn:
            conn.execute(sa.update(runs).where(runs.c.id == run.id).values(next(steps)))

    seen: list[tuple[RunStatus, int, bool, bool]] = []
    try:
        ended = scheduler.wait_for_run(
            run.id,
            on_change=lambda r: seen.append((r.status, r.attempt, r.started_at is not None, r.retry_at is not None)),
            sleep=worker_moves,
        )
    finally:
        engine.dispose()
    assert (ended.status, ended.attempt) == (RunStatus.succeeded, 2)
    assert seen == [
        (RunStatus.pending, 1, False, True),
        (RunStatus.running, 1, False, False),
        (RunStatus.running, 1, True, False),
        (RunStatus.failed, 1, True, True),
        (RunStatus.running, 2, False, False),
    ]


# -- health: what makes overlap unsafe among the live workers ------------------------------


def _worker(
    name: str, host: str, backend: str | None, problem: str | None = None, target: str | None = None
) -> WorkerInfo:
    at = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
    return WorkerInfo(name, host, 1, at, at, at + timedelta(seconds=30), "alive", backend, problem, target)


@pytest.mark.parametrize(
    ("live", "dialect", "said"),
    [
        ([_worker("a", "h1", "redis"), _worker("b", "h2", "redis")], "postgresql", []),
        ([_worker("a", "h1", "file"), _worker("b", "h1", None)], "postgresql", []),  # one host, a row from before 0007
        ([_worker("a", "h1", "file"), _worker("b", "h1", "file")], "sqlite", []),
        (
            [_worker("a", "h1", "file"), _worker("b", "h2", "file")],
            "postgresql",
            [
                "workers on 2 hosts (h1, h2) use file locks: overlap holds only within each host; use --lock-backend redis"
            ],
        ),
        (
            [_worker("a", "h1", "file"), _worker("b", "h2", "redis")],
            "postgresql",
            ["live workers use different lock backends (file: a; redis: b): overlap is not enforced between them"],
        ),
        (
            [_worker("a", "h1", "redis", None, "redis r1 db 0"), _worker("b", "h2", "redis", None, "redis r1 db 0")],
            "postgresql",
            [],
        ),
        (
            [_worker("a", "h1", "redis", None, "redis r1 db 0"), _worker("b", "h2", "redis", None, "redis r2 db 0")],
            "postgresql",
            [
                "live workers keep their locks in different Redis servers or databases (redis r1 db 0: a; "
                "redis r2 db 0: b): overlap is not enforced between them (after a Redis restart, until each "
                "worker has seen the new server: 20 s)"
            ],
        ),
        (
            [_worker("a", "h1", "redis", "the lock backend at redis://r:6379/0 is unreachable: timeout")],
            "postgresql",
            ["worker a: the lock backend at redis://r:6379/0 is unreachable: timeout"],
        ),
    ],
)
def test_health_says_what_makes_overlap_unsafe_among_the_live_workers(
    live: list[WorkerInfo], dialect: str, said: list[str]
) -> None:
    assert lock_warnings(live, dialect) == said
