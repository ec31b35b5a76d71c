"""What ``/metrics`` reports (flowyml_sched/application/metrics.py and web.py's ``/metrics``):
run ends counted once each as they happen, whatever path they take into the store (a finish
recorded late, a retry, a backfill of a missed fire time, a row committed after a higher id,
history pruned), histograms of lateness and duration, schedules' states and next fire times.
Real stores (SQLite and PostgreSQL, conftest.py); "now" is given to every read."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from flowyml_sched import web
from flowyml_sched.application import Scheduler
from flowyml_sched.application.metrics import MetricsSnapshot, RunMetrics
from flowyml_sched.model import Claim, Run, RunOrigin, RunStatus, Schedule, WorkerInfo
from flowyml_sched.store import ScheduleStore, open_store
from flowyml_sched.store.engine import create_store_engine
from flowyml_sched.store.schema import runs, schedules
from flowyml_sched.triggers import HourlyTrigger

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
WORKER = WorkerInfo("host:1:abc", "host", 1, NOW, NOW, NOW + timedelta(days=1), "alive")


def seconds(n: float) -> datetime:
    return NOW + timedelta(seconds=n)


def hourly(name: str, **fields) -> Schedule:
    return Schedule(name=name, pipeline="ping", trigger=HourlyTrigger(0), timezone="UTC", **fields)


def ended(name: str, at: datetime, status: RunStatus, late: float | None = None, took: float | None = None, **fields):
    """A history row of a run that ended: started ``late`` seconds after ``at``, ran ``took`` seconds."""
    started = None if late is None else at + timedelta(seconds=late)
    finished = (started or at) + timedelta(seconds=took or 0)
    return Run(
        schedule_name=name,
        scheduled_for=at,
        status=status,
        started_at=started,
        finished_at=finished,
        duration_seconds=took,
        **fields,
    )


def ends(figures: MetricsSnapshot) -> dict[tuple[str, str], int]:
    """``(schedule, status)`` → run ends counted."""
    return {(name, status): n for name, by_status in figures.run_ends.items() for status, n in by_status.items()}


def claim(store: ScheduleStore, name: str, at: datetime = NOW) -> Claim:
    """Store ``name`` due at ``at`` and claim it (a ``running`` row, not started)."""
    store.heartbeat(WORKER)
    store.add(dataclasses.replace(hourly(name), next_fire_at=at), at - timedelta(hours=1))
    (found,) = store.claim_due(at, WORKER, 1).claims
    return found


def run_to_end(store: ScheduleStore, found: Claim, started: datetime, finished: datetime, **outcome) -> None:
    assert store.start_attempt(found, WORKER, started_at=started, run_uuid=f"u{found.run_id}-{found.attempt}")
    status = outcome.pop("status", RunStatus.succeeded)
    assert store.finish_run(found.run_id, WORKER, status, finished, **outcome)


def test_ends_before_the_first_read_are_not_counted_and_every_kind_after_it_is(store: ScheduleStore) -> None:
    """Counters count from the process's first read: what the history held then is left out
    (a restart is a counter reset to Prometheus), what ends afterwards is counted by status,
    lateness and duration."""
    store.record_run(ended("etl", seconds(-7200), RunStatus.succeeded, late=1, took=1))
    store.record_run(ended("etl", seconds(-30), RunStatus.failed, late=1, took=2))  # ended lately
    going = claim(store, "report", seconds(-1))
    metrics = RunMetrics(store)
    assert ends(metrics.read(NOW, 0)) == {}

    for run in (
        ended("etl", seconds(60), RunStatus.succeeded, late=0.02, took=0.3),
        ended("etl", seconds(120), RunStatus.failed, late=3, took=45),
        ended("etl", seconds(180), RunStatus.succeeded, late=0.2, took=2, attempt=2),  # a retry: no lateness
        ended("report", seconds(60), RunStatus.skipped),
        ended("report", seconds(120), RunStatus.missed),
        ended("report", seconds(-86400), RunStatus.succeeded, late=86000, took=1, origin=RunOrigin.backfill),
    ):
        store.record_run(run)
    run_to_end(store, going, seconds(-0.5), seconds(300))  # going at the first read, ended after

    figures = metrics.read(seconds(600), 0)

    assert ends(figures) == {
        ("etl", "succeeded"): 2,
        ("etl", "failed"): 1,
        ("report", "skipped"): 1,
        ("report", "missed"): 1,
        ("report", "succeeded"): 2,
    }
    lateness = dict(figures.lateness.cumulative())
    assert (lateness[0.01], lateness[0.05], lateness[0.5], lateness[2.5], lateness[5.0]) == (0, 1, 2, 2, 3)
    assert lateness[math.inf] == 3
    assert figures.lateness.total == pytest.approx(3.52)
    duration = dict(figures.duration.cumulative())
    assert (duration[0.5], duration[1.0], duration[5.0], duration[60.0], duration[math.inf]) == (1, 2, 3, 4, 5)
    assert figures.duration.total == pytest.approx(48.3 + 300.5)


@pytest.mark.parametrize("read_between_attempts", [True, False])
def test_a_run_counts_once_when_it_ended_for_good_whenever_the_reads_come(
    store: ScheduleStore, read_between_attempts: bool
) -> None:
    """A retried run counts once, by its last attempt: the same figures whether or not a
    read saw the attempt before the retry."""
    metrics = RunMetrics(store)
    first, second = claim(store, "a"), claim(store, "b")
    assert ends(metrics.read(seconds(1), 1)) == {}

    run_to_end(store, first, seconds(0.1), seconds(2))
    run_to_end(store, second, seconds(0.5), seconds(3), status=RunStatus.failed, retry_at=seconds(30))
    if read_between_attempts:
        for at in (4, 5, 50, 600):  # later reads, inside and past the window of recent ends
            assert ends(metrics.read(seconds(at), 1)) == {("a", "succeeded"): 1}  # b waits for its retry

    attempt, _ = store.retry_run(second.run_id, WORKER, 1)
    retried = dataclasses.replace(second, attempt=attempt)
    run_to_end(store, retried, seconds(601), seconds(602))
    figures = metrics.read(seconds(603), 1)
    assert ends(figures) == {("a", "succeeded"): 1, ("b", "succeeded"): 1}
    assert figures.lateness.total == pytest.approx(0.1)  # runs that ended in one attempt
    assert figures.duration.total == pytest.approx(1.9 + 1)  # each run's last attempt
    assert metrics.read(seconds(604), 1) == figures  # nothing new: the same figures


def test_a_finish_recorded_long_after_the_run_ended_is_counted(store: ScheduleStore) -> None:
    """A finish queued while the store was down is written later with the time the run ended:
    older than the window of recent ends, found because the row was last seen running."""
    metrics = RunMetrics(store)
    found = claim(store, "a")
    assert store.start_attempt(found, WORKER, started_at=seconds(0.1), run_uuid="u")
    assert ends(metrics.read(seconds(600), 1)) == {}
    assert store.finish_run(found.run_id, WORKER, RunStatus.succeeded, seconds(5))
    assert ends(metrics.read(seconds(601), 1)) == {("a", "succeeded"): 1}
    assert ends(metrics.read(seconds(602), 1)) == {("a", "succeeded"): 1}


def test_a_fire_time_recorded_missed_then_backfilled_counts_both_ends(store: ScheduleStore) -> None:
    """The backfill reuses the row recorded missed; its run starts and ends between two reads."""
    store.add(hourly("a"), seconds(-7200))
    metrics = RunMetrics(store)
    metrics.read(NOW, 1)
    store.record_run(ended("a", seconds(-3600), RunStatus.missed))
    assert ends(metrics.read(seconds(1), 1)) == {("a", "missed"): 1}

    Scheduler(store, clock=lambda: seconds(1)).backfill("a", seconds(-3600), NOW)
    store.heartbeat(WORKER)
    (found,) = store.claim_due(seconds(2), WORKER, 1).claims
    assert found.scheduled_for == seconds(-3600)
    run_to_end(store, found, seconds(3), seconds(4))

    assert ends(metrics.read(seconds(5), 1)) == {("a", "missed"): 1, ("a", "succeeded"): 1}
    assert ends(metrics.read(seconds(6), 1)) == {("a", "missed"): 1, ("a", "succeeded"): 1}


def test_pruned_history_stays_counted_and_a_new_reader_counts_from_its_start(store: ScheduleStore) -> None:
    metrics = RunMetrics(store)
    metrics.read(NOW, 0)
    for hour in range(1, 5):
        store.record_run(ended("a", seconds(-3600 * hour), RunStatus.succeeded, late=0, took=1))
    assert ends(metrics.read(seconds(1), 0)) == {("a", "succeeded"): 4}
    assert store.prune_history(keep=1, older_than=None) == 3
    assert ends(metrics.read(seconds(2), 0)) == {("a", "succeeded"): 4}  # a counter never goes down
    assert ends(RunMetrics(store).read(seconds(3), 0)) == {}


def test_reads_that_overtake_each_other_count_an_end_once(store: ScheduleStore) -> None:
    """A read whose clock was taken before another's (it waited for the lock) does not move the
    window of recent ends back over ends already counted and forgotten."""
    metrics = RunMetrics(store)
    metrics.read(NOW, 0)
    store.record_run(ended("x", NOW, RunStatus.succeeded, late=0.1, took=1))
    for at in (2, 61.5, 60.9, 62):
        metrics.read(seconds(at), 0)
    figures = metrics.read(seconds(63), 0)
    assert ends(figures) == {("x", "succeeded"): 1}
    assert sum(figures.duration.counts) == 1


def test_a_row_committed_after_a_higher_id_is_counted(postgresql_url: str) -> None:
    """On PostgreSQL a transaction that took a lower id may commit after one with a higher id
    that a read already saw."""
    with open_store(postgresql_url) as store:
        metrics = RunMetrics(store)
        metrics.read(NOW, 0)
        engine = create_store_engine(postgresql_url).write_engine
        try:
            with engine.connect() as slow:
                slow.begin()
                slow.execute(sa.insert(runs).values(_row("slow", seconds(-60))))
                store.record_run(ended("fast", seconds(-60), RunStatus.succeeded, late=0, took=1))
                assert ends(metrics.read(seconds(1), 0)) == {("fast", "succeeded"): 1}
                slow.commit()
            assert ends(metrics.read(seconds(600), 0)) == {("fast", "succeeded"): 1, ("slow", "failed"): 1}
        finally:
            engine.dispose()


def _row(name: str, at: datetime) -> dict:
    """A history row ended long before it commits (outside the window of recent ends)."""
    return {
        "schedule_name": name,
        "scheduled_for": at,
        "status": "failed",
        "attempt": 1,
        "finished_at": at,
        "origin": "schedule",
    }


def test_schedules_by_state_late_ones_and_next_fire_times(store: ScheduleStore, store_url: str) -> None:
    store.add(dataclasses.replace(hourly("due"), next_fire_at=seconds(-61)), seconds(-7200))
    store.add(dataclasses.replace(hourly("soon"), next_fire_at=seconds(30)), seconds(-7200))
    store.add(dataclasses.replace(hourly("paused", enabled=False), next_fire_at=seconds(-3600)), seconds(-7200))
    store.add(dataclasses.replace(hourly("broken"), next_fire_at=seconds(-3600)), seconds(-7200))
    metrics = RunMetrics(store)
    figures = metrics.read(NOW, 2)
    assert figures.schedules == {"enabled": 3, "paused": 1, "broken": 0}
    assert (figures.late, figures.live_workers) == (2, 2)

    engine = create_store_engine(store_url).write_engine
    try:
        with engine.begin() as conn:  # a zone no tzdata knows, changed as the store would (a new version)
            conn.execute(
                sa.update(schedules)
                .where(schedules.c.name == "broken")
                .values(timezone="Mars/Olympus_Mons", version=schedules.c.version + 1)
            )
    finally:
        engine.dispose()
    figures = metrics.read(seconds(1), 2)
    assert figures.schedules == {"enabled": 2, "paused": 1, "broken": 1}
    assert figures.late == 1
    assert figures.next_fire_at == {"due": seconds(-61), "soon": seconds(30)}


# -- the endpoint ----------------------------------------------------------------------------

READ = {"Authorization": "Bearer read-token-2"}


def scrape(client: TestClient, headers: dict[str, str] | None = READ) -> dict[str, dict]:
    """The samples of /metrics by family name, parsed by prometheus_client's own parser."""
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")  # the text exposition format
    return {
        family.name: {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        for family in text_string_to_metric_families(answer.text)
    }


def test_the_metrics_endpoint_reports_runs_schedules_and_workers(store: ScheduleStore, store_url: str) -> None:
    store.add(dataclasses.replace(hourly("etl"), next_fire_at=seconds(3600)), seconds(-7200))
    store.record_run(ended("etl", seconds(-7200), RunStatus.failed, late=1, took=2))  # before the server
    tokens = web.Tokens(admin=("admin-token-1",), read=("read-token-2",))
    app = web.create_app(lambda: Scheduler(open_store(store_url), clock=lambda: NOW), tokens)
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        families = scrape(client)
        assert families["flowyml_sched_runs"] == {}  # counted from the first scrape on
        assert families["flowyml_sched_next_fire_time_seconds"] == {
            ("flowyml_sched_next_fire_time_seconds", (("schedule", "etl"),)): seconds(3600).timestamp()
        }
        assert families["flowyml_sched_schedules"][("flowyml_sched_schedules", (("state", "enabled"),))] == 1
        assert families["flowyml_sched_schedules_late"] == {("flowyml_sched_schedules_late", ()): 0}
        assert families["flowyml_sched_workers_live"] == {("flowyml_sched_workers_live", ()): 0}

        store.record_run(ended("etl", seconds(-3600), RunStatus.succeeded, late=0.3, took=12))
        store.record_run(ended("etl", seconds(-60), RunStatus.failed, late=1, took=2))
        families = scrape(client)
        assert families["flowyml_sched_runs"] == {
            ("flowyml_sched_runs_total", (("schedule", "etl"), ("status", "succeeded"))): 1.0,
            ("flowyml_sched_runs_total", (("schedule", "etl"), ("status", "failed"))): 1.0,
        }
        lateness = families["flowyml_sched_run_lateness_seconds"]
        assert lateness[("flowyml_sched_run_lateness_seconds_bucket", (("le", "0.25"),))] == 0
        assert lateness[("flowyml_sched_run_lateness_seconds_bucket", (("le", "0.5"),))] == 1
        assert lateness[("flowyml_sched_run_lateness_seconds_count", ())] == 2
        assert families["flowyml_sched_run_duration_seconds"][("flowyml_sched_run_duration_seconds_sum", ())] == 14


def test_public_metrics_lets_a_scraper_in_without_a_token(store: ScheduleStore, store_url: str) -> None:
    tokens = web.Tokens(admin=("admin-token-1",))
    app = web.create_app(lambda: Scheduler(open_store(store_url)), tokens, public_health=True)
    with TestClient(app) as client:
        assert "flowyml_sched_workers_live" in scrape(client, headers=None)
        assert client.get("/api/schedules").status_code == 401


def test_the_text_kept_per_schedule_is_what_prometheus_client_writes_for_the_whole_snapshot() -> None:
    from prometheus_client import generate_latest

    from flowyml_sched import exposition
    from flowyml_sched.application.metrics import DURATION_BUCKETS, LATENESS_BUCKETS, Histogram

    def snapshot(run_ends: dict, next_fire_at: dict) -> MetricsSnapshot:
        return MetricsSnapshot(
            NOW, run_ends, Histogram(LATENESS_BUCKETS), Histogram(DURATION_BUCKETS), next_fire_at, {"enabled": 2}, 0, 1
        )

    def at_once(figures: MetricsSnapshot) -> bytes:
        families = [
            exposition._runs(sorted(figures.run_ends.items())),
            *exposition._others(figures),
            exposition._next_fire_times(sorted(figures.next_fire_at.items())),
        ]
        return generate_latest(exposition._Families(*families))

    rendering = exposition.Exposition()
    for figures in (
        snapshot({"b": {"succeeded": 3}, 'a "quoted"\\': {"failed": 1, "missed": 2}}, {"b": seconds(60)}),
        snapshot({"b": {"succeeded": 4}, 'a "quoted"\\': {"failed": 1, "missed": 2}}, {"b": seconds(120)}),
        snapshot({"c": {"skipped": 1}}, {"c": seconds(1), "b": seconds(120)}),  # one gone, one new
        snapshot({}, {}),
    ):
        assert rendering.render(figures) == at_once(figures)


def test_a_row_whose_next_fire_time_does_not_read_is_broken_not_a_failed_scrape(sqlite_url: str) -> None:
    """SQLite takes any text in a time column; a row written so by hand is counted broken."""
    with open_store(sqlite_url) as store:
        store.add(dataclasses.replace(hourly("fine"), next_fire_at=seconds(60)), NOW)
        store.add(dataclasses.replace(hourly("scribbled"), next_fire_at=seconds(60)), NOW)
        engine = create_store_engine(sqlite_url).write_engine
        try:
            for garbage in ("2026-13-07 14:00:00", "", 1796655311):
                with engine.begin() as conn:
                    conn.execute(
                        sa.text("UPDATE schedules SET next_fire_at = :v WHERE name = 'scribbled'"), {"v": garbage}
                    )
                figures = RunMetrics(store).read(NOW, 0)
                assert figures.schedules == {"enabled": 1, "paused": 0, "broken": 1}, garbage
                assert figures.next_fire_at == {"fine": seconds(60)}
        finally:
            engine.dispose()
