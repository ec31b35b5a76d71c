"""The worker, one round at a time: ``Worker.tick(now)`` with chosen instants, on a real
store (SQLite file and PostgreSQL, from conftest.py) and file locks under tmp_path.

Time is injected: each worker's clock reads the instant of its last tick plus the real time
since, so durations are real and fire times are whatever the test says. Waiting is only
ever for work (``wait_idle``, a record line, a status in the store), never for the clock.
Pipelines come from ``pipelines_for_tests``; most run in-process (fast), the ones whose
behaviour depends on a child process (timeout, replace, exit codes) run in one.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from pipelines_for_tests import pythonpath, read_records

from flowyml_sched.application import Scheduler, next_fire_at
from flowyml_sched.errors import StoreError
from flowyml_sched.locks import FileLocks
from flowyml_sched.model import CatchUp, Overlap, Policy, Run, RunOrigin, RunStatus, Schedule, WorkerInfo
from flowyml_sched.store import ScheduleStore, open_store
from flowyml_sched.store.schema import UTCDateTime
from flowyml_sched.triggers import CronTrigger, DailyTrigger, HourlyTrigger, IntervalTrigger, Trigger
from flowyml_sched.worker import (
    Event,
    LeaseLost,
    Listener,
    RunClaimed,
    RunFinished,
    RunMissed,
    RunsAbandoned,
    RunSkipped,
    RunStarted,
    Worker,
    WorkerHeartbeat,
    WorkerSettings,
    log_event,
)
from flowyml_sched.worker.execution import STALLED

UTC = timezone.utc

CREATED = datetime(2026, 1, 9, 12, 0, tzinfo=UTC)
"""Schedules are created at this instant unless a test says otherwise."""
DAY1 = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
"""The first fire time of a daily 09:00 UTC schedule created at CREATED."""
MINUTE1 = CREATED + timedelta(minutes=1)
"""The first fire time of an every-minute cron schedule created at CREATED."""
LONG_LEASE = 7 * 24 * 3600.0
"""Workers in these tests hold their lease across the days the tests jump over."""


def at_minute(n: int) -> datetime:
    return CREATED + timedelta(minutes=n)


class Clock:
    """A worker's clock: the instant of its last tick plus the real time since."""

    def __init__(self, start: datetime):
        self.set(start)

    def set(self, now: datetime) -> None:
        self._base, self._since = now, time.monotonic()

    def __call__(self) -> datetime:
        return self._base + timedelta(seconds=time.monotonic() - self._since)


@dataclass
class Ticking:
    worker: Worker
    clock: Clock
    stopped: bool = field(default=False)

    @property
    def identity(self) -> WorkerInfo:
        return self.worker.identity

    def tick(self, now: datetime) -> list[tuple[str, datetime]]:
        """One round at ``now``; the claims as (schedule, fire time)."""
        self.clock.set(now)
        return [(c.schedule.name, c.scheduled_for) for c in self.worker.tick(now)]

    def tick_on(self) -> list[tuple[str, datetime]]:
        """One more round at the instant the worker's clock has reached, leaving the clock
        running. A round right after another must not be ticked at a chosen instant: on a
        loaded machine the last round may take longer than the gap chosen, and setting the
        clock back would let a run that saw its instant come (and started) read a start time
        before it."""
        return [(c.schedule.name, c.scheduled_for) for c in self.worker.tick(self.clock())]

    def idle(self, timeout: float = 30.0) -> None:
        assert self.worker.wait_idle(timeout), f"runs still going after {timeout} s"


@pytest.fixture
def record(tmp_path: Path) -> Path:
    """The file the test pipelines append their events to."""
    return tmp_path / "record.jsonl"


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    """A gate for ``pipelines_for_tests:gated``: runs wait until this file exists."""
    return tmp_path / "gate"


@pytest.fixture
def child_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Child processes (``python -m flowyml_sched.runner``) can import pipelines_for_tests."""
    monkeypatch.setenv("PYTHONPATH", pythonpath())


@pytest.fixture
def make_worker(store: ScheduleStore, tmp_path: Path, gate: Path) -> Iterator[Callable[..., Ticking]]:
    """Build workers on ``store`` with file locks under tmp_path; stopped at the test's end."""
    made: list[Ticking] = []

    def make(listeners: tuple[Listener, ...] = (log_event,), **settings: Any) -> Ticking:
        options: dict[str, Any] = {
            "log_dir": tmp_path / "logs",
            "in_process": True,
            "heartbeat_interval": 0.0,  # heartbeat (and reap) on every tick
            "lease": LONG_LEASE,
            "poll_interval": 0.05,
            "grace": 5.0,
            **settings,
        }
        clock = Clock(CREATED)
        worker = Worker(
            store, FileLocks(tmp_path / "locks"), WorkerSettings(**options), clock=clock, listeners=listeners
        )
        ticking = Ticking(worker, clock)
        made.append(ticking)
        return ticking

    yield make
    gate.touch()  # let gated runs end
    for ticking in made:
        if ticking.stopped:
            continue
        ticking.worker.request_stop()
        ticking.worker.request_stop()  # second stage: stop child processes at once
        stopper = threading.Thread(target=ticking.worker.run)  # run() only drains now (not the main thread: no signals)
        stopper.start()
        stopper.join(30)


def add(
    store: ScheduleStore,
    name: str = "nightly",
    pipeline: str = "pipelines_for_tests:ok_with_scheduled_for",
    trigger: Trigger | None = None,
    params: dict[str, Any] | None = None,
    created: datetime = CREATED,
    **policy: Any,
) -> Schedule:
    schedule = Schedule(
        name=name,
        pipeline=pipeline,
        trigger=trigger or DailyTrigger(9, 0),
        timezone="UTC",
        params=params or {},
        policy=Policy(**policy),
    )
    # straight into the store (as add_schedule would), so unresolvable pipelines can be stored too
    return store.add(dataclasses.replace(schedule, next_fire_at=next_fire_at(schedule, created)), created)


def runs_of(store: ScheduleStore, name: str) -> dict[datetime, Run]:
    return {r.scheduled_for: r for r in store.history(name, 1000)}


def statuses(store: ScheduleStore, name: str) -> dict[datetime, RunStatus]:
    return {at: r.status for at, r in runs_of(store, name).items()}


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll ``condition`` until it is truthy (waiting for work to reach a state, not for time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def events(record: Path, event: str) -> list[dict[str, Any]]:
    return [r for r in read_records(record) if r["event"] == event]


def flock_held(path: Path) -> bool:
    """Whether some process holds a flock on ``path`` (read from /proc/locks; takes nothing)."""
    try:
        inode = path.stat().st_ino
    except FileNotFoundError:
        return False
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "FLOCK" in fields and any(f.endswith(f":{inode}") for f in fields):
            return True
    return False


def tick_together(workers: list[Ticking], now: datetime) -> list[list[tuple[str, datetime]]]:
    """Every worker ticks at ``now`` from its own thread, released at once by a barrier."""
    barrier = threading.Barrier(len(workers))
    claimed: list[list[tuple[str, datetime]]] = [[] for _ in workers]

    def tick(index: int) -> None:
        barrier.wait()
        claimed[index] = workers[index].tick(now)

    threads = [threading.Thread(target=tick, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return claimed


# -- claiming ------------------------------------------------------------------------------


def test_a_due_fire_time_is_claimed_exactly_once_when_two_workers_tick_at_the_same_instant(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    names = [f"job-{i}" for i in range(6)]
    for name in names:
        add(store, name, trigger=HourlyTrigger(0), params={"record": str(record), "tag": name})
    first, second = make_worker(max_concurrent=8), make_worker(max_concurrent=8)
    fire_times = [CREATED + timedelta(hours=h) for h in (1, 2, 3)]
    for now in fire_times:
        both = [claim for claims in tick_together([first, second], now) for claim in claims]
        assert sorted(both) == sorted((name, now) for name in names)  # each once, none lost
        first.idle()
        second.idle()
    ran = [(r["tag"], r["scheduled_for"]) for r in events(record, "ok")]
    assert sorted(ran) == sorted((name, now.isoformat()) for name in names for now in fire_times)
    for name in names:
        assert statuses(store, name) == dict.fromkeys(fire_times, RunStatus.succeeded)


def test_a_fire_time_is_claimed_at_most_claim_ahead_before_its_instant_and_runs_at_it_never_before(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    add(store, params={"record": str(record)})
    worker = make_worker(claim_ahead=0.1)
    ahead = timedelta(seconds=0.1)
    assert worker.tick(DAY1 - ahead - timedelta(microseconds=1)) == []
    assert store.history("nightly") == []
    assert worker.tick(DAY1 - ahead) == [("nightly", DAY1)]
    worker.idle()
    (run,) = store.history("nightly")
    assert run.status is RunStatus.succeeded
    assert run.started_at is not None and run.started_at >= DAY1  # held until its instant by the worker's clock
    assert [r["scheduled_for"] for r in events(record, "ok")] == [DAY1.isoformat()]
    assert worker.tick(DAY1 + timedelta(seconds=1)) == []  # and never twice
    assert statuses(store, "nightly") == {DAY1: RunStatus.succeeded}


def test_without_claim_ahead_a_fire_time_is_not_claimed_one_microsecond_before_its_instant(
    store: ScheduleStore, make_worker: Callable[..., Ticking]
) -> None:
    add(store)
    worker = make_worker(claim_ahead=0.0)
    assert worker.tick(DAY1 - timedelta(microseconds=1)) == []
    assert store.history("nightly") == []
    assert worker.tick(DAY1) == [("nightly", DAY1)]


def test_run_once_claims_only_what_is_due_now_not_ahead(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    add(store, params={"record": str(record)})
    worker = make_worker(claim_ahead=10.0)
    # the clock stands still 1 s before the fire time (a running one could reach it on a loaded machine)
    worker.worker.clock = lambda: DAY1 - timedelta(seconds=1)
    runner = threading.Thread(target=worker.worker.run, kwargs={"once": True})
    runner.start()
    runner.join(30)
    assert not runner.is_alive()
    worker.stopped = True
    assert store.history("nightly") == []
    assert not record.exists()


def test_a_second_stop_signal_while_a_run_waits_for_its_instant_records_it_unstarted(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    add(store, params={"record": str(record)})
    worker = make_worker(claim_ahead=60.0)
    assert worker.tick(DAY1 - timedelta(seconds=30)) == [("nightly", DAY1)]  # held for 30 s
    assert statuses(store, "nightly") == {DAY1: RunStatus.running}
    worker.worker.request_stop()
    worker.worker.request_stop()
    worker.idle(10.0)
    (run,) = store.history("nightly")
    assert (run.status, run.error) == (RunStatus.interrupted, "the worker stopped before this run started")
    assert run.started_at is None  # it never started
    assert not record.exists()


def test_a_run_waiting_for_an_instant_beyond_the_grace_period_is_closed_unstarted_when_it_ends(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    add(store, params={"record": str(record)})
    worker = make_worker(claim_ahead=60.0, grace=0.2)
    assert worker.tick(DAY1 - timedelta(seconds=30)) == [("nightly", DAY1)]
    worker.worker.request_stop()
    runner = threading.Thread(target=worker.worker.run)  # drains: 0.2 s, not the 30 s to the instant
    runner.start()
    runner.join(15)
    assert not runner.is_alive()
    worker.stopped = True
    (run,) = store.history("nightly")
    assert (run.status, run.error, run.started_at) == (
        RunStatus.interrupted,
        "the worker stopped before this run started",
        None,
    )
    assert not record.exists()


def test_a_retried_abandoned_run_claimed_ahead_by_the_dead_worker_waits_for_its_instant(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    add(store, params={"record": str(record)}, retries=1)
    dead = WorkerInfo("elsewhere:4242:deadbeef", "elsewhere", 4242, DAY1 - timedelta(hours=1), DAY1, DAY1, "alive")
    store.heartbeat(dead)
    early = DAY1 - timedelta(seconds=20)  # its --claim-ahead was long; its lease has ended at DAY1 - 1 s
    assert [c.scheduled_for for c in store.claim_due(early, dead, 10, until=DAY1).claims] == [DAY1]
    store.heartbeat(dataclasses.replace(dead, heartbeat_at=early, lease_expires_at=DAY1 - timedelta(seconds=1)))

    live = make_worker(claim_ahead=0.1)
    # reaps, storing the retry, which the same round claims: held 0.3 s, not started now
    assert live.tick(DAY1 - timedelta(milliseconds=300)) == [("nightly", DAY1)]
    live.idle()
    run = runs_of(store, "nightly")[DAY1]
    # the dead worker never started it: its attempt is handed over as it is, no retry spent
    assert (run.status, run.attempt, run.worker, run.error) == (RunStatus.succeeded, 1, live.identity.id, None)
    assert run.started_at is not None and run.started_at >= DAY1


def test_idle_rounds_query_nothing_until_a_schedule_changes_then_the_change_is_claimed(
    store: ScheduleStore, store_url: str, make_worker: Callable[..., Ticking]
) -> None:
    add(store)  # first due at DAY1
    worker = make_worker(heartbeat_interval=LONG_LEASE)
    statements: list[str] = []
    sa.event.listen(store._db.engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql))
    assert worker.tick(at_minute(1)) == []
    assert any("min(" in sql.lower() for sql in statements)  # the first round reads the earliest due time
    statements.clear()
    for minute in range(2, 20):
        assert worker.tick(at_minute(minute)) == []
    assert statements == []  # then nothing, while nothing changes
    with open_store(store_url) as other:  # another process's CLI adds a schedule due sooner
        add(other, "sooner", trigger=HourlyTrigger(30))
    sooner = CREATED.replace(minute=30)
    assert wait_until(lambda: worker.tick(sooner), "the worker to see the new schedule") == [("sooner", sooner)]
    worker.idle()


@pytest.mark.parametrize(
    ("catchup", "ran_days"),
    [(CatchUp.latest, [12]), (CatchUp.none, []), (CatchUp.all, [10, 11, 12])],
    ids=["latest-runs-once", "none-runs-never", "all-runs-three-times-oldest-first"],
)
def test_after_three_days_down_a_daily_schedule_runs_by_its_catchup_policy(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path, catchup: CatchUp, ran_days: list[int]
) -> None:
    add(store, params={"record": str(record)}, catchup=catchup)  # overlap: skip, the default
    back = datetime(2026, 1, 12, 12, 0, tzinfo=UTC)  # due: Jan 10, 11 and 12 at 09:00
    worker = make_worker()
    day = {d: datetime(2026, 1, d, 9, 0, tzinfo=UTC) for d in (10, 11, 12)}

    claims = worker.tick(back)
    worker.idle()

    assert claims == [("nightly", day[d]) for d in ran_days]
    assert [r["scheduled_for"] for r in events(record, "ok")] == [day[d].isoformat() for d in ran_days]
    history = runs_of(store, "nightly")
    assert {at: r.status for at, r in history.items()} == {
        day[d]: RunStatus.succeeded if d in ran_days else RunStatus.missed for d in (10, 11, 12)
    }
    for d in set(day) - set(ran_days):
        assert "missed" in history[day[d]].error and f"catch-up: {catchup.value}" in history[day[d]].error
    assert store.get("nightly").next_fire_at == datetime(2026, 1, 13, 9, 0, tzinfo=UTC)
    assert worker.tick(back + timedelta(seconds=1)) == []


@pytest.mark.parametrize(("signals", "unstarted"), [(1, RunStatus.succeeded), (2, RunStatus.interrupted)])
def test_one_rounds_catch_up_runs_go_one_by_one_and_only_a_second_stop_signal_drops_the_unstarted(
    store: ScheduleStore,
    make_worker: Callable[..., Ticking],
    gate: Path,
    record: Path,
    signals: int,
    unstarted: RunStatus,
) -> None:
    add(
        store,
        pipeline="pipelines_for_tests:gated",
        params={"gate": str(gate), "record": str(record)},
        catchup=CatchUp.all,
        overlap=Overlap.allow,  # even where overlap is allowed, one round's catch-up runs go one by one
    )
    worker = make_worker()
    day = [datetime(2026, 1, d, 9, 0, tzinfo=UTC) for d in (10, 11, 12)]
    assert worker.tick(datetime(2026, 1, 12, 12, 0, tzinfo=UTC)) == [("nightly", d) for d in day]
    wait_until(lambda: events(record, "start"), "the oldest catch-up run to start")
    assert [r["scheduled_for"] for r in events(record, "start")] == [day[0].isoformat()]
    for _ in range(signals):  # one: drain (claimed runs still run); two: stop at once
        worker.worker.request_stop()
    gate.touch()
    worker.idle()
    runs = runs_of(store, "nightly")
    assert {at: r.status for at, r in runs.items()} == {
        day[0]: RunStatus.succeeded,
        day[1]: unstarted,
        day[2]: unstarted,
    }
    started = [r["scheduled_for"] for r in events(record, "start")]
    if unstarted is RunStatus.succeeded:
        assert started == [d.isoformat() for d in day]  # oldest first, each after the previous ended
        ends = [r["at"] for r in events(record, "end")]
        assert all(s["at"] >= e for s, e in zip(events(record, "start")[1:], ends, strict=False))
        # history says when each started, not when the round claimed it: no run's duration holds the wait
        rows = [runs[d] for d in day]
        assert all(later.started_at >= earlier.finished_at for earlier, later in itertools.pairwise(rows))
    else:
        assert started == [day[0].isoformat()]
        assert runs[day[1]].error == "the worker stopped before this run started"


def children_of(pid: int) -> list[int]:
    """The children of every thread of ``pid`` (from /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def prepared_children() -> list[int]:
    """The processes forked by this process's warm templates (``python -m flowyml_sched.runner
    --template``): the runs prepared or running, read from /proc."""
    found = []
    for child in children_of(os.getpid()):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--template" in command:
            found += children_of(child)
    return found


def test_a_prepared_run_cancelled_by_a_pause_starts_nothing_and_its_child_leaves(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path, child_env: None
) -> None:
    add(store, pipeline="pipelines_for_tests:ok", params={"record": str(record)})
    worker = make_worker(in_process=False)
    assert worker.worker.templates is not None
    # as if its preparations had taken up to 2 s: it is forked 3.01 s ahead, and the claim-ahead
    # window (0.1 s) grows to cover that
    worker.worker.templates.learn("pipelines_for_tests:ok", 2.0)
    assert worker.worker.templates.start("pipelines_for_tests:ok")  # as run() starts it: ready for the first run
    assert worker.tick(DAY1 - timedelta(seconds=3)) == [("nightly", DAY1)]
    prepared = wait_until(prepared_children, "the run's child to be forked, prepared")
    Scheduler(store, clock=lambda: DAY1 - timedelta(seconds=1)).pause("nightly", "maintenance")
    wait_until(lambda: statuses(store, "nightly").get(DAY1) is RunStatus.skipped, "the fire time to close")
    worker.idle()
    (run,) = store.history("nightly")
    assert (run.started_at, run.error) == (None, "not started: the schedule was paused before its fire time")
    assert events(record, "ok") == []  # the pipeline's first line never ran
    wait_until(lambda: not set(prepared) & set(prepared_children()), "the prepared child to leave")
    assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in prepared)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_prepared_runs_are_forked_from_a_template_and_start_at_their_instant_never_before(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path, child_env: None
) -> None:
    worker = make_worker(in_process=False, claim_ahead=3.0)
    assert worker.worker.templates is not None
    assert worker.worker.templates.start("pipelines_for_tests:ok_with_scheduled_for")
    now = datetime.now(UTC)  # the worker's clock is the real one here: the pipelines record time.time()
    instants = [now + timedelta(seconds=s) for s in (1.0, 1.5, 2.0)]
    for n, instant in enumerate(instants):
        add(
            store,
            name=f"s{n}",
            pipeline="pipelines_for_tests:ok_with_scheduled_for",
            trigger=IntervalTrigger(timedelta(hours=1), instant),
            params={"record": str(record)},
            created=now,
        )
    assert sorted(worker.tick(now)) == [(f"s{n}", at) for n, at in enumerate(instants)]
    worker.idle()
    ran = events(record, "ok")
    assert sorted(r["scheduled_for"] for r in ran) == [at.isoformat() for at in instants]
    for line in ran:
        assert line["at"] >= datetime.fromisoformat(line["scheduled_for"]).timestamp()  # never before
        assert line["ppid"] != os.getpid()  # forked by a template, not a fresh interpreter of the worker's
    assert len({line["pid"] for line in ran}) == 3  # a process of its own each
    for n in range(3):
        assert statuses(store, f"s{n}") == {instants[n]: RunStatus.succeeded}


def test_pausing_stops_claims_at_the_next_tick_and_resuming_skips_the_paused_fire_times(
    store: ScheduleStore, make_worker: Callable[..., Ticking]
) -> None:
    add(store, "hourly", trigger=HourlyTrigger(0), catchup=CatchUp.all)
    worker = make_worker()
    hour = {h: CREATED.replace(hour=h) for h in (13, 14, 15, 16)}
    assert worker.tick(hour[13]) == [("hourly", hour[13])]
    worker.idle()

    Scheduler(store, clock=lambda: hour[13] + timedelta(minutes=10)).pause("hourly", "maintenance")
    assert worker.tick(hour[14]) == []
    assert worker.tick(hour[15]) == []

    resumed = Scheduler(store, clock=lambda: hour[15] + timedelta(minutes=30)).resume("hourly").entry
    assert resumed.next_fire_at == hour[16]
    assert worker.tick(hour[15] + timedelta(minutes=30)) == []
    assert worker.tick(hour[16]) == [("hourly", hour[16])]
    worker.idle()
    # the paused hours neither ran nor count as missed, even with catch-up "all"
    assert statuses(store, "hourly") == {hour[13]: RunStatus.succeeded, hour[16]: RunStatus.succeeded}


def test_a_schedule_created_now_does_not_run_for_earlier_fire_times(
    store: ScheduleStore, make_worker: Callable[..., Ticking]
) -> None:
    created = CREATED + timedelta(seconds=30)  # 12:00:30, after today's 09:00 and this minute's :00
    add(store, "daily", created=created, catchup=CatchUp.all)
    add(store, "minutely", trigger=CronTrigger("* * * * *"), created=created, catchup=CatchUp.all)
    worker = make_worker()
    assert worker.tick(created) == []
    assert store.get("minutely").next_fire_at == MINUTE1
    assert worker.tick(MINUTE1) == [("minutely", MINUTE1)]
    worker.idle()
    assert statuses(store, "daily") == {}
    assert statuses(store, "minutely") == {MINUTE1: RunStatus.succeeded}


# -- overlap -------------------------------------------------------------------------------


def add_gated(
    store: ScheduleStore, gate: Path, record: Path, overlap: Overlap, trigger: Trigger | None = None, **policy: Any
) -> None:
    """Schedule "busy" (every minute unless ``trigger`` says otherwise) running the gated pipeline."""
    add(
        store,
        "busy",
        pipeline="pipelines_for_tests:gated",
        trigger=trigger or CronTrigger("* * * * *"),
        params={"gate": str(gate), "record": str(record)},
        overlap=overlap,
        **policy,
    )


def test_overlap_skip_records_the_next_fire_time_skipped_while_the_previous_run_goes_on(
    store: ScheduleStore, make_worker: Callable[..., Ticking], gate: Path, record: Path
) -> None:
    add_gated(store, gate, record, Overlap.skip)
    worker = make_worker()
    worker.tick(at_minute(1))
    wait_until(lambda: events(record, "start"), "the first run to start")
    assert worker.tick(at_minute(2)) == [("busy", at_minute(2))]
    wait_until(lambda: statuses(store, "busy").get(at_minute(2)) is RunStatus.skipped, "the second to be skipped")
    gate.touch()
    worker.idle()
    runs = runs_of(store, "busy")
    assert runs[at_minute(1)].status is RunStatus.succeeded
    assert "overlap: skip" in runs[at_minute(2)].error
    assert [r["scheduled_for"] for r in events(record, "start")] == [at_minute(1).isoformat()]


def test_overlap_queue_lets_one_run_wait_and_skips_a_third(
    store: ScheduleStore, make_worker: Callable[..., Ticking], gate: Path, record: Path, tmp_path: Path
) -> None:
    add_gated(store, gate, record, Overlap.queue)
    worker = make_worker()
    worker.tick(at_minute(1))
    wait_until(lambda: events(record, "start"), "the first run to start")
    worker.tick(at_minute(2))
    wait_until(lambda: flock_held(tmp_path / "locks" / "busy+queued.lock"), "the second run to queue")
    worker.tick(at_minute(3))
    wait_until(lambda: statuses(store, "busy").get(at_minute(3)) is RunStatus.skipped, "the third to be skipped")
    assert statuses(store, "busy")[at_minute(2)] is RunStatus.running  # still waiting
    assert len(events(record, "start")) == 1
    gate.touch()
    worker.idle()
    runs = runs_of(store, "busy")
    assert {at: r.status for at, r in runs.items()} == {
        at_minute(1): RunStatus.succeeded,
        at_minute(2): RunStatus.succeeded,
        at_minute(3): RunStatus.skipped,
    }
    assert "overlap: queue" in runs[at_minute(3)].error
    first_end = next(r for r in events(record, "end") if r["scheduled_for"] == at_minute(1).isoformat())
    second_start = next(r for r in events(record, "start") if r["scheduled_for"] == at_minute(2).isoformat())
    assert second_start["at"] >= first_end["at"]  # the queued one ran after, not alongside


def test_overlap_allow_runs_the_next_fire_time_alongside(
    store: ScheduleStore, make_worker: Callable[..., Ticking], gate: Path, record: Path
) -> None:
    add_gated(store, gate, record, Overlap.allow)
    worker = make_worker()
    worker.tick(at_minute(1))
    worker.tick(at_minute(2))
    started = wait_until(lambda: len(events(record, "start")) == 2 and events(record, "start"), "both to start")
    assert events(record, "end") == []  # both started while neither could end: together
    assert {r["scheduled_for"] for r in started} == {at_minute(1).isoformat(), at_minute(2).isoformat()}
    gate.touch()
    worker.idle()
    assert statuses(store, "busy") == {at_minute(1): RunStatus.succeeded, at_minute(2): RunStatus.succeeded}


def test_overlap_replace_interrupts_the_running_child_and_runs_the_new_fire_time(
    store: ScheduleStore, make_worker: Callable[..., Ticking], gate: Path, record: Path, child_env: None
) -> None:
    add_gated(store, gate, record, Overlap.replace)
    worker = make_worker(in_process=False)
    worker.tick(at_minute(1))
    first = wait_until(lambda: events(record, "start"), "the first child to start")[0]
    worker.tick(at_minute(2))
    wait_until(lambda: statuses(store, "busy").get(at_minute(1)) is RunStatus.interrupted, "the first to be replaced")
    wait_until(lambda: len(events(record, "start")) == 2, "the second child to start")
    gate.touch()
    worker.idle()
    runs = runs_of(store, "busy")
    assert runs[at_minute(2)].status is RunStatus.succeeded
    assert runs[at_minute(1)].status is RunStatus.interrupted
    assert f"replaced by the run for {at_minute(2).isoformat()} (overlap: replace)" in runs[at_minute(1)].error
    assert [r["scheduled_for"] for r in events(record, "end")] == [at_minute(2).isoformat()]
    with pytest.raises(ProcessLookupError):
        os.kill(first["pid"], 0)  # the replaced child is gone


def test_overlap_skip_applies_at_the_instant_of_each_fire_time_claimed_ahead(
    store: ScheduleStore, make_worker: Callable[..., Ticking], gate: Path, record: Path
) -> None:
    first = CREATED + timedelta(hours=1)
    add_gated(store, gate, record, Overlap.skip, IntervalTrigger(timedelta(seconds=1), first))
    fires = [first + timedelta(seconds=n) for n in range(3)]
    worker = make_worker(claim_ahead=3.0)
    # one fire time ahead a round, not a batch that would run one after the other
    assert [worker.tick(first - timedelta(milliseconds=50)), worker.tick_on(), worker.tick_on()] == [
        [("busy", at)] for at in fires
    ]
    wait_until(lambda: statuses(store, "busy").get(fires[2]) is RunStatus.skipped, "the third to be skipped")
    gate.touch()
    worker.idle()
    assert statuses(store, "busy") == dict(
        zip(fires, [RunStatus.succeeded, RunStatus.skipped, RunStatus.skipped], strict=True)
    )
    assert [r["scheduled_for"] for r in events(record, "start")] == [fires[0].isoformat()]


def test_overlap_replace_stops_only_earlier_runs_not_a_later_one_claimed_ahead(
    store: ScheduleStore, make_worker: Callable[..., Ticking], gate: Path, record: Path, child_env: None
) -> None:
    first = CREATED + timedelta(hours=1)
    add_gated(store, gate, record, Overlap.replace, IntervalTrigger(timedelta(seconds=1), first))
    fires = [first + timedelta(seconds=n) for n in range(3)]
    worker = make_worker(in_process=False, claim_ahead=3.0)
    # one fire time ahead a round: three rounds claim the three, each its own job
    assert [worker.tick(first - timedelta(milliseconds=50)), worker.tick_on(), worker.tick_on()] == [
        [("busy", at)] for at in fires
    ]
    # three child processes, each stopped by the next (SIGTERM, then its exit): on a loaded
    # 2-core machine each start and stop takes seconds, so the wait is for the work, not a time
    wait_until(lambda: len(events(record, "start")) == 3, "the third run to start, replacing the second", timeout=90.0)
    gate.touch()
    worker.idle()
    runs = runs_of(store, "busy")
    assert runs[fires[2]].status is RunStatus.succeeded  # the second's replace left it alone
    for earlier, later in itertools.pairwise(fires):
        assert runs[earlier].status is RunStatus.interrupted
        assert f"replaced by the run for {later.isoformat()} (overlap: replace)" in runs[earlier].error
    assert all(runs[at].started_at >= at for at in fires)


def test_while_draining_a_replace_leaves_the_running_run_its_grace_and_closes_the_new_one_unstarted(
    store: ScheduleStore, make_worker: Callable[..., Ticking], gate: Path, record: Path
) -> None:
    first = CREATED + timedelta(hours=1)
    add_gated(store, gate, record, Overlap.replace, IntervalTrigger(timedelta(seconds=1), first))
    worker = make_worker(claim_ahead=3.0)
    assert [worker.tick(first - timedelta(milliseconds=50)), worker.tick_on()] == [
        [("busy", first)],
        [("busy", first + timedelta(seconds=1))],
    ]
    wait_until(lambda: events(record, "start"), "the first run to start")
    worker.worker.request_stop()  # draining: the second reaches its instant with the first still going
    wait_until(
        lambda: statuses(store, "busy").get(first + timedelta(seconds=1)) is RunStatus.interrupted,
        "the second to close",
    )
    gate.touch()
    worker.idle()
    runs = runs_of(store, "busy")
    assert runs[first].status is RunStatus.succeeded
    second = runs[first + timedelta(seconds=1)]
    assert (second.error, second.started_at) == ("the worker stopped before this run started", None)


def test_a_worker_that_lost_its_lease_does_not_start_the_run_it_claimed_ahead(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    add(store, params={"record": str(record)}, retries=1)
    stalled = make_worker(claim_ahead=60.0, lease=0.5)
    assert stalled.tick(DAY1 - timedelta(seconds=1)) == [("nightly", DAY1)]  # held 1 s; its lease ends first
    other = make_worker()
    # reaps the stalled one's run and takes its retry, held until DAY1
    assert other.tick(DAY1 - timedelta(milliseconds=400)) == [("nightly", DAY1)]
    other.idle()
    stalled.idle()
    run = runs_of(store, "nightly")[DAY1]
    assert (run.status, run.attempt, run.worker) == (RunStatus.succeeded, 1, other.identity.id)  # handed over
    assert len(events(record, "ok")) == 1  # the stalled worker did not run it too


# -- outcomes ------------------------------------------------------------------------------


def test_a_failing_pipeline_with_two_retries_runs_three_attempts_and_ends_failed(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    add(
        store,
        pipeline="pipelines_for_tests:raises",
        params={"record": str(record)},
        retries=2,
        retry_backoff=timedelta(milliseconds=10),
    )
    worker = make_worker()
    worker.tick(DAY1)
    worker.idle()
    run = runs_of(store, "nightly")[DAY1]
    assert run.status is RunStatus.failed
    assert run.attempt == 3
    assert "RuntimeError: boom from pipelines_for_tests.raises" in run.error
    assert len(events(record, "raises")) == 3


def add_flaky(store: ScheduleStore, record: Path, *, retries: int, retry_backoff: timedelta) -> None:
    """Add ``nightly`` running a pipeline that fails its first attempt, then succeeds."""
    add(
        store,
        pipeline="pipelines_for_tests:flaky",
        params={"record": str(record), "failures": 1},
        retries=retries,
        retry_backoff=retry_backoff,
    )


def test_a_retry_that_succeeds_ends_succeeded_with_its_attempt_number(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    add_flaky(store, record, retries=2, retry_backoff=timedelta(0))
    worker = make_worker()
    worker.tick(DAY1)
    worker.idle()
    run = runs_of(store, "nightly")[DAY1]
    assert (run.status, run.attempt) == (RunStatus.succeeded, 2)
    assert [r["event"] for r in read_records(record)] == ["flaky-failed", "flaky-ok"]


def test_a_child_that_outlives_its_timeout_is_stopped_and_recorded_timed_out(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path, child_env: None
) -> None:
    add(store, pipeline="pipelines_for_tests:hang", params={"record": str(record)}, timeout=timedelta(seconds=0.5))
    worker = make_worker(in_process=False)
    worker.tick(DAY1)
    worker.idle()
    run = runs_of(store, "nightly")[DAY1]
    assert run.status is RunStatus.timed_out
    assert run.error == "timed out after 0.5 s"
    assert 0.5 <= run.duration_seconds < 10
    with pytest.raises(ProcessLookupError):
        os.kill(events(record, "hang")[0]["pid"], 0)


IN_PROCESS_OUTCOMES = [
    ("returns_none", RunStatus.succeeded, None),
    ("ok", RunStatus.succeeded, None),
    ("raises", RunStatus.failed, "RuntimeError: boom from pipelines_for_tests.raises"),
    ("exits", RunStatus.failed, "the pipeline called sys.exit(3)"),
    ("NOT_CALLABLE", RunStatus.failed, "not callable"),
    ("no_such_module_for_tests:run", RunStatus.failed, "module 'no_such_module_for_tests' cannot be imported"),
    ("pipelines_for_tests:no_such_pipeline", RunStatus.failed, "has no attribute 'no_such_pipeline'"),
    ("not-a-registered-pipeline", RunStatus.failed, "no entry point named 'not-a-registered-pipeline'"),
]


@pytest.mark.parametrize(
    ("pipeline", "status", "error"),
    IN_PROCESS_OUTCOMES,
    ids=[
        "returning-None-succeeds",
        "returning-a-value-succeeds",
        "raising-fails-with-the-exception",
        "sys-exit-3-fails",
        "a-non-callable-fails",
        "an-unimportable-module-fails-clearly",
        "a-missing-attribute-fails-clearly",
        "an-unregistered-entry-point-fails-clearly",
    ],
)
def test_an_in_process_run_ends_with_the_status_and_error_its_pipeline_earns(
    store: ScheduleStore, make_worker: Callable[..., Ticking], pipeline: str, status: RunStatus, error: str | None
) -> None:
    reference = pipeline if (":" in pipeline or "-" in pipeline) else f"pipelines_for_tests:{pipeline}"
    add(store, pipeline=reference)
    worker = make_worker()
    assert worker.tick(DAY1) == [("nightly", DAY1)]
    worker.idle()
    run = runs_of(store, "nightly")[DAY1]
    assert run.status is status
    if error is None:
        assert run.error is None
    else:
        assert error in run.error
    assert run.finished_at is not None and run.duration_seconds is not None


def test_child_process_runs_end_with_the_status_and_error_their_pipelines_earn(
    store: ScheduleStore, make_worker: Callable[..., Ticking], tmp_path: Path, child_env: None
) -> None:
    cases = {
        "returns-none": ("pipelines_for_tests:returns_none", RunStatus.succeeded, None),
        "raises": ("pipelines_for_tests:raises", RunStatus.failed, "RuntimeError: boom"),
        "sys-exit": ("pipelines_for_tests:exits", RunStatus.failed, "the pipeline called sys.exit(3)"),
        "os-exit": (
            "pipelines_for_tests:hard_exit",
            RunStatus.failed,
            "the run's process exited with status 3 before reporting a result",
        ),
        "prints-100mb": ("pipelines_for_tests:prints_100mb", RunStatus.succeeded, None),
        "unresolvable": ("no_such_module_for_tests:run", RunStatus.failed, "cannot be imported"),
    }
    for name, (pipeline, _, _) in cases.items():
        add(store, name, pipeline=pipeline)
    cap = 64 * 1024
    worker = make_worker(in_process=False, max_concurrent=len(cases), max_log_bytes=cap)
    assert len(worker.tick(DAY1)) == len(cases)
    worker.idle(60)
    for name, (_, status, error) in cases.items():
        run = runs_of(store, name)[DAY1]
        assert run.status is status, (name, run.error)
        assert (run.error is None) if error is None else (error in run.error), (name, run.error)
        assert run.log_path and Path(run.log_path).parent == tmp_path / "logs" / name
    log = Path(runs_of(store, "prints-100mb")[DAY1].log_path).read_bytes()
    assert cap < len(log) < cap + 200  # the first 64 KiB and a note of what was dropped
    assert log.endswith(f"{100 * 1024 * 1024 - cap} more bytes of output dropped at the {cap}-byte limit]\n".encode())


# -- abandoned runs ------------------------------------------------------------------------


def worker_elsewhere(store: ScheduleStore, worker_id: str) -> WorkerInfo:
    """A worker of another host, alive in the store with a 30 s lease from DAY1 (it heartbeats no more)."""
    info = WorkerInfo(
        id=worker_id,
        host="elsewhere",
        pid=4242,
        started_at=DAY1 - timedelta(hours=1),
        heartbeat_at=DAY1,
        lease_expires_at=DAY1 + timedelta(seconds=30),
        status="alive",
    )
    store.heartbeat(info)
    return info


@pytest.mark.parametrize(("retries", "retried"), [(1, True), (0, False)], ids=["retried", "not-retried"])
def test_a_dead_workers_running_run_is_marked_abandoned_and_retried_only_when_retries_allow(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path, retries: int, retried: bool
) -> None:
    add(store, params={"record": str(record)}, retries=retries)
    dead = worker_elsewhere(store, "elsewhere:4242:deadbeef")
    (claim,) = store.claim_due(DAY1, dead, 10).claims
    assert store.start_attempt(claim, dead, started_at=DAY1, run_uuid="elsewhere")  # then it "dies"

    live = make_worker()
    # nothing new is due; the reap happens and, with retries, the same round takes the stored retry
    assert live.tick(DAY1 + timedelta(minutes=5)) == ([("nightly", DAY1)] if retried else [])
    live.idle()

    run = runs_of(store, "nightly")[DAY1]
    workers = {w.id: w for w in store.list_workers()}
    assert workers[dead.id].status == "dead"
    if retried:
        assert (run.status, run.attempt, run.worker) == (RunStatus.succeeded, 2, live.identity.id)
        assert [r["scheduled_for"] for r in events(record, "ok")] == [DAY1.isoformat()]
    else:
        assert (run.status, run.attempt, run.worker) == (RunStatus.abandoned, 1, dead.id)
        assert run.error.startswith(f"worker {dead.id} stopped heartbeating")
        assert events(record, "ok") == []


def test_a_worker_back_from_a_stall_past_its_lease_declares_no_other_worker_dead_for_a_lease(
    store: ScheduleStore, make_worker: Callable[..., Ticking]
) -> None:
    """Its stall may have been what kept the others from heartbeating (stopped inside a SQLite
    write transaction, it held the store's write lock): they get one lease to renew theirs."""
    add(store)
    other = worker_elsewhere(store, "elsewhere:4242:feedface")
    (claim,) = store.claim_due(DAY1, other, 10).claims
    assert store.start_attempt(claim, other, started_at=DAY1, run_uuid="elsewhere")
    stalled = make_worker(lease=30.0)
    assert stalled.tick(DAY1) == []  # its lease stored
    back = DAY1 + timedelta(minutes=5)  # back from a stall past its own lease (and the other's)
    assert stalled.tick(back) == []
    assert runs_of(store, "nightly")[DAY1].status is RunStatus.running
    assert {w.id: w.status for w in store.list_workers()}[other.id] == "alive"
    stalled.tick(back + timedelta(seconds=20))  # heartbeating again, within its lease
    assert runs_of(store, "nightly")[DAY1].status is RunStatus.running
    stalled.tick(back + timedelta(seconds=31))  # a lease later the other has not heartbeated: dead
    assert runs_of(store, "nightly")[DAY1].status is RunStatus.abandoned
    assert {w.id: w.status for w in store.list_workers()}[other.id] == "dead"


@pytest.mark.usefixtures("child_env")
def test_a_worker_that_finds_its_lease_expired_stops_its_own_copy_of_the_run(
    store: ScheduleStore, make_worker: Callable[..., Ticking], gate: Path
) -> None:
    add(store, pipeline="pipelines_for_tests:gated", params={"gate": str(gate)})
    stalled = make_worker(in_process=False, lease=30.0)
    assert stalled.tick(DAY1) == [("nightly", DAY1)]
    wait_until(lambda: runs_of(store, "nightly")[DAY1].started_at, "its start to be recorded")
    # the stalled worker misses its lease; another worker declares its run abandoned
    make_worker().tick(DAY1 + timedelta(minutes=5))
    assert runs_of(store, "nightly")[DAY1].status is RunStatus.abandoned
    # back at its next heartbeat, the stalled worker stops the child it still runs
    stalled.tick(DAY1 + timedelta(minutes=5, seconds=1))
    stalled.idle(20.0)
    assert runs_of(store, "nightly")[DAY1].status is RunStatus.abandoned  # its stop did not overwrite the row
    assert {w.id: w.status for w in store.list_workers()}[stalled.identity.id] == "alive"


def test_a_worker_whose_lease_has_not_expired_keeps_its_runs(
    store: ScheduleStore, make_worker: Callable[..., Ticking]
) -> None:
    add(store)
    alive = WorkerInfo("elsewhere:1:cafe", "elsewhere", 1, DAY1, DAY1, DAY1 + timedelta(minutes=10), "alive")
    store.heartbeat(alive)
    store.claim_due(DAY1, alive, 10)
    make_worker().tick(DAY1 + timedelta(minutes=9, seconds=59))
    assert runs_of(store, "nightly")[DAY1].status is RunStatus.running
    assert {w.id: w.status for w in store.list_workers()}[alive.id] == "alive"


# -- heartbeat, health, retention ----------------------------------------------------------


def test_a_tick_writes_the_workers_heartbeat_row_with_its_lease(
    store: ScheduleStore, make_worker: Callable[..., Ticking]
) -> None:
    worker = make_worker(lease=45.0)
    worker.tick(DAY1)
    (row,) = store.list_workers()
    assert row.id == worker.identity.id and row.pid == os.getpid() and row.status == "alive"
    assert (row.heartbeat_at, row.lease_expires_at) == (DAY1, DAY1 + timedelta(seconds=45))
    assert [w.id for w in Scheduler(store, clock=lambda: DAY1 + timedelta(seconds=45)).live_workers()] == [row.id]
    assert Scheduler(store, clock=lambda: DAY1 + timedelta(seconds=45, microseconds=1)).live_workers() == []
    worker.tick(DAY1 + timedelta(minutes=1))
    assert store.list_workers()[0].heartbeat_at == DAY1 + timedelta(minutes=1)


def finished(name: str, at: datetime, status: RunStatus, duration: float | None) -> Run:
    return Run(
        name,
        at,
        status,
        started_at=at,
        finished_at=at + timedelta(seconds=duration or 0),
        duration_seconds=duration,
        error=None if status is RunStatus.succeeded else f"{status.value} here",
    )


def test_health_reports_live_workers_late_schedules_success_rate_percentiles_and_last_failure(
    store: ScheduleStore, make_worker: Callable[..., Ticking]
) -> None:
    add(store, "late-one")  # due at DAY1 09:00; no worker claims it before the report
    worker = make_worker(lease=3600.0)
    worker.tick(DAY1 - timedelta(minutes=1))  # alive until 09:59
    base = DAY1 - timedelta(hours=20)  # inside the 24 h window
    for i, (status, duration) in enumerate(
        [
            (RunStatus.abandoned, None),  # a row with missing times: counted, no duration
            (RunStatus.succeeded, 1.0),
            (RunStatus.timed_out, 7.0),
            (RunStatus.succeeded, 2.0),
            (RunStatus.failed, 10.0),
            (RunStatus.succeeded, 3.0),
            (RunStatus.missed, None),
            (RunStatus.skipped, None),
        ]
    ):
        run = finished("etl", base + timedelta(hours=i), status, duration)
        if status is RunStatus.abandoned:
            run = Run("etl", run.scheduled_for, status)  # no started_at, finished_at, duration
        store.record_run(run)
    store.record_run(finished("etl", DAY1 - timedelta(days=3), RunStatus.failed, 99.0))  # outside the window

    report = Scheduler(store, clock=lambda: DAY1 + timedelta(minutes=5)).health()

    assert report["status"] == "degraded"  # a late schedule
    assert [w["id"] for w in report["workers"]] == [worker.identity.id]
    assert [(s["name"], s["late_seconds"]) for s in report["late"]] == [("late-one", 300.0)]
    etl = report["schedules"]["etl"]
    assert (etl["runs"], etl["succeeded"], etl["missed"], etl["skipped"]) == (6, 3, 1, 1)
    assert etl["success_rate"] == 0.5 and report["success_rate"] == 0.5
    assert (etl["duration_p50_seconds"], etl["duration_p95_seconds"]) == (3.0, 10.0)  # of 1, 2, 3, 7, 10
    assert report["last_failure"]["status"] == "failed"
    assert report["last_failure"]["scheduled_for"] == (base + timedelta(hours=4)).isoformat()


def test_health_is_down_when_schedules_exist_and_no_worker_is_live(
    store: ScheduleStore, make_worker: Callable[..., Ticking]
) -> None:
    add(store)
    make_worker(lease=30.0).tick(DAY1 - timedelta(hours=1))
    store.record_run(Run("nightly", DAY1 - timedelta(days=1), RunStatus.failed))  # no times at all
    report = Scheduler(store, clock=lambda: DAY1 - timedelta(minutes=1)).health()
    assert report["status"] == "down" and report["workers"] == []
    assert report["schedules"]["nightly"]["duration_p50_seconds"] is None
    assert report["last_failure"]["started_at"] is None


def test_history_retention_keeps_the_newest_runs_and_never_deletes_a_running_one(
    store: ScheduleStore, make_worker: Callable[..., Ticking]
) -> None:
    days = [datetime(2026, 1, d, 9, 0, tzinfo=UTC) for d in range(1, 8)]
    store.record_run(Run("etl", days[0], RunStatus.running, started_at=days[0]))  # the oldest, still running
    for day in days[1:]:
        store.record_run(finished("etl", day, RunStatus.succeeded, 1.0))
    store.record_run(finished("other", days[0], RunStatus.failed, 1.0))
    make_worker(keep_runs=3).tick(days[-1] + timedelta(hours=1))
    assert sorted(statuses(store, "etl").items()) == [
        (days[0], RunStatus.running),
        *((day, RunStatus.succeeded) for day in days[-3:]),
    ]
    assert list(statuses(store, "other")) == [days[0]]  # counted per schedule


def test_history_retention_by_age_deletes_old_finished_runs_only(
    store: ScheduleStore, make_worker: Callable[..., Ticking]
) -> None:
    days = [datetime(2026, 1, d, 9, 0, tzinfo=UTC) for d in range(1, 8)]
    store.record_run(Run("etl", days[0], RunStatus.running, started_at=days[0]))
    for day in days[1:]:
        store.record_run(finished("etl", day, RunStatus.failed, 1.0))
    make_worker(keep_runs=None, keep_days=2.0).tick(datetime(2026, 1, 7, 12, 0, tzinfo=UTC))
    assert sorted(statuses(store, "etl")) == [days[0], days[5], days[6]]  # Jan 6 and 7 are within 2 days


# -- the loop around tick: once, and draining ----------------------------------------------


def test_run_once_waits_for_what_it_claimed_even_past_the_grace_period(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path, child_env: None
) -> None:
    add(store, pipeline="pipelines_for_tests:slow", params={"seconds": 1.0, "record": str(record)})
    worker = make_worker(grace=0.1, in_process=False)  # a child process: the grace period could stop it
    worker.clock.set(DAY1 + timedelta(seconds=1))
    runner = threading.Thread(target=worker.worker.run, kwargs={"once": True})
    runner.start()
    runner.join(30)
    assert not runner.is_alive()
    worker.stopped = True
    assert runs_of(store, "nightly")[DAY1].status is RunStatus.succeeded
    assert [r["event"] for r in read_records(record)] == ["start", "end"]
    assert store.list_workers()[0].status == "stopped"


def test_a_draining_worker_keeps_its_lease_so_no_other_worker_takes_its_runs(
    store: ScheduleStore, make_worker: Callable[..., Ticking], gate: Path, record: Path
) -> None:
    add(store, pipeline="pipelines_for_tests:gated", params={"gate": str(gate), "record": str(record)})
    draining = make_worker(lease=1.0, heartbeat_interval=0.05, grace=30.0)
    draining.clock.set(DAY1)
    runner = threading.Thread(target=draining.worker.run)
    runner.start()
    wait_until(lambda: events(record, "start"), "the run to start")
    draining.worker.request_stop()
    lease_at_stop = draining.identity.lease_expires_at
    renewed = wait_until(
        lambda: (
            store.list_workers()[0].lease_expires_at > lease_at_stop + timedelta(seconds=0.5)
            and store.list_workers()[0]
        ),
        "a heartbeat during the drain",
    )
    other = make_worker()
    other.tick(lease_at_stop + timedelta(seconds=0.25))  # the old lease has run out, the renewed one not
    assert runs_of(store, "nightly")[DAY1].status is RunStatus.running
    assert renewed.status == "alive"
    gate.touch()
    runner.join(30)
    assert not runner.is_alive()
    draining.stopped = True
    assert runs_of(store, "nightly")[DAY1].status is RunStatus.succeeded
    assert {w.id: w.status for w in store.list_workers()}[draining.identity.id] == "stopped"


def test_a_failing_round_with_work_due_waits_a_poll_before_trying_again(
    store: ScheduleStore, store_url: str, make_worker: Callable[..., Ticking], caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(3):
        add(store, f"job-{i}", trigger=HourlyTrigger(0))
    worker = make_worker(max_concurrent=2, poll_interval=0.2)
    assert len(worker.tick(CREATED.replace(hour=13))) == 2  # a full round: the third one is still due
    worker.idle()
    engine = sa.create_engine(store_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:  # the claims' INSERT fails from now on
        conn.execute(sa.text("ALTER TABLE runs RENAME TO runs_gone"))
    failures = lambda: [r.created for r in caplog.records if "retrying in" in r.getMessage()]  # noqa: E731
    caplog.set_level("ERROR", logger="flowyml_sched.worker")
    runner = threading.Thread(target=worker.worker.run)
    runner.start()
    try:
        wait_until(lambda: len(failures()) >= 4, "four failed rounds")
        second, _, fourth = failures()[1:4]  # (the first round may follow a leftover wake-up at once)
        assert fourth - second >= 2 * 0.2 * 0.9  # a poll between tries, not a busy loop
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE runs_gone RENAME TO runs"))
        engine.dispose()
        worker.worker.request_stop()
        runner.join(30)
        worker.stopped = True


def test_a_run_whose_error_no_database_stores_as_is_is_recorded_and_logged_and_the_worker_goes_on(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flowyml_sched.worker")
    add(store, "bad", pipeline="pipelines_for_tests:raises_unstorable", trigger=HourlyTrigger(0))
    add(store, "good", pipeline="pipelines_for_tests:ok", trigger=HourlyTrigger(0), params={"record": str(record)})
    worker = make_worker(poll_interval=0.05)
    worker.clock.set(CREATED.replace(hour=13))
    runner = threading.Thread(target=worker.worker.run)  # the loop: runners queue their finishes
    runner.start()
    try:
        for hour in (13, 14):
            at = CREATED.replace(hour=hour)
            worker.clock.set(at)
            wait_until(lambda at=at: statuses(store, "good").get(at) is RunStatus.succeeded, f"good at {at}")
            wait_until(lambda at=at: statuses(store, "bad").get(at) is RunStatus.failed, f"bad at {at}")
        error = runs_of(store, "bad")[CREATED.replace(hour=13)].error
        assert "RuntimeError: bad\\x00byte \\udcff" in error
    finally:
        worker.worker.request_stop()
        runner.join(30)
        worker.stopped = True
    assert {w.id: w.status for w in store.list_workers()}[worker.identity.id] == "stopped"
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("bad for")]
    assert len(logged) == 2 and all("failed (RuntimeError: bad\\x00byte \\udcff)" in line for line in logged)
    for line in logged:
        line.encode("utf-8")  # no lone surrogate: any handler can write it


def test_a_finish_the_database_refuses_is_retried_on_its_own_and_holds_up_no_other_write(sqlite_url: str) -> None:
    with open_store(sqlite_url) as opened:
        add(opened, "a")
        add(opened, "b")
        identity = WorkerInfo("w:1:x", "w", 1, DAY1, DAY1, DAY1 + timedelta(seconds=30), "alive")
        first, second = (claim.run_id for claim in opened.claim_due(DAY1, identity, 2).claims)
        engine = sa.create_engine(sqlite_url, poolclass=sa.pool.NullPool)
        with engine.begin() as conn:  # the database refuses one error text
            conn.execute(
                sa.text(
                    "CREATE TRIGGER refuse BEFORE UPDATE ON runs WHEN NEW.error = 'poison' "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        engine.dispose()
        opened.finish_run(first, identity, RunStatus.failed, DAY1, error="poison", wait=False)
        opened.finish_run(second, identity, RunStatus.succeeded, DAY1, wait=False)
        with pytest.raises(StoreError, match="refused"):
            opened.record_queued_finishes()  # the shared transaction fails: both go back, each alone
        add(opened, "c")  # other writes go through meanwhile
        with pytest.raises(StoreError, match="refused"):
            opened.record_queued_finishes()  # "b" is written; "a" fails again, on its own
        assert statuses(opened, "b") == {DAY1: RunStatus.succeeded}
        opened.record_queued_finishes()  # "a" with a note in place of the refused text
        (run,) = opened.history("a")
        assert run.status is RunStatus.failed
        assert run.error.startswith("(the run's error could not be stored: ")


def test_heartbeats_keep_a_lease_shorter_than_the_poll_interval(
    store: ScheduleStore, make_worker: Callable[..., Ticking]
) -> None:
    worker = make_worker(poll_interval=60.0, lease=0.6, heartbeat_interval=0.2)
    runner = threading.Thread(target=worker.worker.run)
    runner.start()
    try:
        beats: set[datetime] = set()

        def heartbeats() -> int:
            beats.update(w.heartbeat_at for w in store.list_workers() if w.id == worker.identity.id)
            return len(beats) >= 4

        wait_until(heartbeats, "four heartbeats within one poll interval", timeout=30.0)
    finally:
        worker.worker.request_stop()
        runner.join(30)
        worker.stopped = True


def test_run_once_runs_everything_due_now_even_beyond_its_capacity(
    store: ScheduleStore, make_worker: Callable[..., Ticking]
) -> None:
    names = [f"job-{i}" for i in range(7)]
    for name in names:
        add(store, name, trigger=HourlyTrigger(0))
    worker = make_worker(max_concurrent=2)
    at = CREATED.replace(hour=13)
    worker.clock.set(at)
    assert worker.worker.run(once=True) == 0
    worker.stopped = True
    assert {name: statuses(store, name) for name in names} == {name: {at: RunStatus.succeeded} for name in names}


def test_an_in_process_pipeline_raising_keyboard_interrupt_fails_and_frees_its_slot(
    store: ScheduleStore, make_worker: Callable[..., Ticking]
) -> None:
    add(store, "kb", pipeline="pipelines_for_tests:raises_keyboard_interrupt", trigger=HourlyTrigger(0))
    worker = make_worker(max_concurrent=1)
    hours = [CREATED.replace(hour=h) for h in (13, 14)]
    for at in hours:
        assert worker.tick(at) == [("kb", at)]  # the second claim needs the slot back
        worker.idle()
    runs = runs_of(store, "kb")
    assert [runs[at].status for at in hours] == [RunStatus.failed, RunStatus.failed]
    assert runs[hours[0]].error.startswith("KeyboardInterrupt: from pipelines_for_tests")


def test_a_refused_finish_on_the_retry_path_is_recorded_by_the_loop_not_left_running(
    sqlite_url: str, tmp_path: Path
) -> None:
    with open_store(sqlite_url) as opened:
        add(opened, "poison", pipeline="pipelines_for_tests:raises", params={"message": "poison"}, retries=1)
        engine = sa.create_engine(sqlite_url, poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TRIGGER refuse BEFORE UPDATE ON runs WHEN NEW.error LIKE '%poison%' "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        engine.dispose()
        settings = WorkerSettings(log_dir=tmp_path / "logs", in_process=True, poll_interval=0.05, lease=LONG_LEASE)
        clock = Clock(DAY1)
        worker = Worker(opened, FileLocks(tmp_path / "locks"), settings, clock=clock)
        runner = threading.Thread(target=worker.run)
        runner.start()
        try:
            wait_until(lambda: statuses(opened, "poison").get(DAY1) is RunStatus.failed, "the run to be recorded")
        finally:
            worker.request_stop()
            runner.join(30)
        (run,) = opened.history("poison")
        assert run.error.startswith("(the run's error could not be stored: ")


def test_without_inotify_the_loop_looks_at_the_store_every_poll_interval(
    sqlite_url: str, tmp_path: Path, record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as on a system without inotify: the SQLite change watch gives nothing to sleep on, so the
    # loop must not sleep until its next heartbeat (a week away here) but look every poll interval
    monkeypatch.setitem(sys.modules, "inotify_simple", None)
    settings = WorkerSettings(
        log_dir=tmp_path / "logs", in_process=True, poll_interval=0.05, lease=LONG_LEASE, heartbeat_interval=LONG_LEASE
    )
    with open_store(sqlite_url) as store:
        worker = Worker(store, FileLocks(tmp_path / "locks"), settings)
        runner = threading.Thread(target=worker.run)
        runner.start()
        try:
            for name in ("first", "second"):  # "second" comes once the loop surely sleeps
                due = datetime.now(UTC) + timedelta(seconds=0.3)
                schedule = Schedule(
                    name=name,
                    pipeline="pipelines_for_tests:ok",
                    trigger=IntervalTrigger(timedelta(hours=1), due),
                    params={"record": str(record), "tag": name},
                    next_fire_at=due,
                )
                with open_store(sqlite_url) as other:  # another process's CLI, say
                    other.add(schedule, datetime.now(UTC))
                wait_until(
                    lambda name=name: [r for r in store.history(name) if r.status is RunStatus.succeeded],
                    f"the run of {name}",
                )
        finally:
            worker.request_stop()
            runner.join(30)
        assert not runner.is_alive()


# -- fenced starts and durable retries -----------------------------------------------------


def test_a_worker_declared_dead_mid_batch_starts_none_of_the_rest_though_its_own_lease_looks_valid(
    store: ScheduleStore,
    make_worker: Callable[..., Ticking],
    record: Path,
    gate: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the issue's stall: a catch-up batch runs one fire time after the other in one runner;
    # while the first runs, another worker declares this one dead (here its lease, as this
    # worker's clock sees it, still holds: only the database's fence can stop the rest)
    caplog.set_level(logging.INFO, "flowyml_sched.worker")
    add_gated(store, gate, record, Overlap.allow, catchup=CatchUp.all)
    stalled = make_worker()
    fires = [at_minute(n) for n in (1, 2, 3)]
    assert stalled.tick(at_minute(3) + timedelta(seconds=30)) == [("busy", at) for at in fires]
    wait_until(lambda: events(record, "start"), "the first fire time to start")
    # another worker's heartbeat, past the stalled worker's lease, declares it dead
    store.reap_abandoned(at_minute(3) + timedelta(seconds=LONG_LEASE + 3600))
    assert {at: runs_of(store, "busy")[at].status for at in fires} == dict.fromkeys(fires, RunStatus.abandoned)
    gate.touch()
    stalled.idle()
    started = [
        e["scheduled_for"] for e in events(record, "start") if e["scheduled_for"] in {at.isoformat() for at in fires}
    ]
    assert started == [fires[0].isoformat()]  # the two others were refused at their fenced start
    assert {at: runs_of(store, "busy")[at].status for at in fires} == dict.fromkeys(fires, RunStatus.abandoned)
    not_recorded = [r.getMessage() for r in caplog.records if "not recorded: its row was closed already" in r.message]
    assert len(not_recorded) == 3  # the log says the store keeps them abandoned, not "interrupted"


def test_a_start_the_store_refuses_runs_nothing_and_the_fire_time_is_recorded_missed_once_it_can(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    # a write of a run's start that fails (a restart, a trigger that rejects it): the pipeline
    # must not run, and the row must not stay running once the store takes writes again
    add(store, params={"record": str(record)}, misfire_grace=timedelta(seconds=1))
    reject = {
        "sqlite": "CREATE TRIGGER refuse_starts BEFORE UPDATE OF started_at ON runs "
        "BEGIN SELECT RAISE(ABORT, 'starts refused'); END",
        "postgresql": "CREATE FUNCTION refuse_starts() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'starts refused'; END $$; CREATE TRIGGER refuse_starts BEFORE UPDATE OF started_at "
        "ON runs FOR EACH ROW EXECUTE FUNCTION refuse_starts()",
    }[store.dialect]
    with store._db.write_engine.begin() as conn:
        conn.exec_driver_sql(reject)
    worker = make_worker()
    worker.tick(DAY1)
    worker.idle()
    assert events(record, "ok") == []
    assert runs_of(store, "nightly")[DAY1].status is RunStatus.running  # its end is queued, not lost
    with store._db.write_engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse_starts" + (" ON runs" if store.dialect == "postgresql" else ""))
    worker.tick(DAY1 + timedelta(seconds=5))  # a round writes what was queued
    run = runs_of(store, "nightly")[DAY1]
    assert (run.status, run.started_at) == (RunStatus.missed, None)
    assert run.error is not None and run.error.startswith("its start could not be recorded")


def test_a_failed_attempt_stores_its_retry_before_the_backoff_so_another_worker_takes_it_after_a_stop(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    add_flaky(store, record, retries=1, retry_backoff=timedelta(hours=1))
    first = make_worker()
    first.tick(DAY1)
    wait_until(lambda: runs_of(store, "nightly")[DAY1].retry_at is not None, "the retry to be stored")
    run = runs_of(store, "nightly")[DAY1]
    assert (run.status, run.attempt) == (RunStatus.failed, 1)
    assert run.retry_at is not None and run.retry_at >= DAY1 + timedelta(hours=1)
    first.worker.request_stop()  # during the backoff: the stored retry outlives this worker
    first.worker.run()
    first.stopped = True
    second = make_worker()
    assert second.tick(DAY1 + timedelta(hours=1, seconds=1)) == [("nightly", DAY1)]
    second.idle()
    run = runs_of(store, "nightly")[DAY1]
    assert (run.status, run.attempt, run.worker) == (RunStatus.succeeded, 2, second.identity.id)
    assert [r["event"] for r in read_records(record)] == ["flaky-failed", "flaky-ok"]


def test_a_retry_that_cannot_start_keeps_the_outcome_of_the_attempt_that_ran(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path, gate: Path
) -> None:
    # attempt 1 is abandoned while its (stalled) worker still runs it and holds the run lock;
    # the retry waits out its misfire grace, then meets "overlap: skip": the row stays
    # abandoned, not skipped
    add_gated(
        store,
        gate,
        record,
        Overlap.skip,
        trigger=DailyTrigger(9, 0),
        retries=1,
        catchup=CatchUp.none,
        misfire_grace=timedelta(seconds=0.5),  # how long the retry waits for the lock
    )
    stalled = make_worker()
    assert stalled.tick(DAY1) == [("busy", DAY1)]
    wait_until(lambda: events(record, "start"), "attempt 1 to start")
    reaper = make_worker()
    assert reaper.tick(DAY1 + timedelta(seconds=LONG_LEASE, hours=2)) == [("busy", DAY1)]  # takes the stored retry
    reaper.idle()
    gate.touch()
    stalled.idle()
    run = runs_of(store, "busy")[DAY1]
    assert (run.status, run.attempt) == (RunStatus.abandoned, 2)
    assert run.error is not None and run.error.splitlines()[-1].startswith("attempt 2: not started: the previous run")


def test_a_retry_waits_for_the_run_lock_the_abandoned_attempt_still_holds_then_runs(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path, gate: Path
) -> None:
    add_gated(store, gate, record, Overlap.skip, trigger=DailyTrigger(9, 0), retries=1, catchup=CatchUp.none)
    stalled = make_worker()
    assert stalled.tick(DAY1) == [("busy", DAY1)]
    wait_until(lambda: events(record, "start"), "attempt 1 to start")
    reaper = make_worker()
    assert reaper.tick(DAY1 + timedelta(seconds=LONG_LEASE, hours=2)) == [("busy", DAY1)]
    assert not reaper.worker.wait_idle(0.3)  # the retry waits for the lock, not skipped
    gate.touch()
    stalled.idle()
    reaper.idle()
    run = runs_of(store, "busy")[DAY1]
    assert (run.status, run.attempt, run.worker) == (RunStatus.succeeded, 2, reaper.identity.id)
    first_end, second_start = events(record, "end")[0]["at"], events(record, "start")[1]["at"]
    assert second_start >= first_end  # never beside the first attempt


def test_a_failed_heartbeat_leaves_the_lease_the_worker_counts_on_where_the_store_has_it(
    store: ScheduleStore, make_worker: Callable[..., Ticking]
) -> None:
    worker = make_worker(lease=30.0)
    worker.tick(DAY1)
    lease = worker.identity.lease_expires_at
    reject = {
        "sqlite": "CREATE TRIGGER refuse_beats BEFORE UPDATE ON workers BEGIN SELECT RAISE(ABORT, 'no'); END",
        "postgresql": "CREATE FUNCTION refuse_beats() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'no'; END $$; CREATE TRIGGER refuse_beats BEFORE UPDATE ON workers "
        "FOR EACH ROW EXECUTE FUNCTION refuse_beats()",
    }[store.dialect]
    with store._db.write_engine.begin() as conn:
        conn.exec_driver_sql(reject)
    with pytest.raises(StoreError):
        worker.tick(DAY1 + timedelta(seconds=20))
    assert worker.identity.lease_expires_at == lease  # an outage: the lease was not renewed
    with store._db.write_engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse_beats" + (" ON workers" if store.dialect == "postgresql" else ""))


def test_a_start_refused_only_because_the_stored_lease_ran_out_renews_it_and_runs(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    # after an outage longer than the lease, before any other worker reaped this one: the
    # database has its lease expired, the worker's memory not (the renewals failed)
    add(store, params={"record": str(record)})
    worker = make_worker(heartbeat_interval=LONG_LEASE)
    worker.tick(DAY1 - timedelta(hours=1))
    with store._db.write_engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE workers SET lease_expires_at = :at WHERE id = :id").bindparams(
                sa.bindparam("at", DAY1 - timedelta(seconds=1), type_=UTCDateTime()), id=worker.identity.id
            )
        )
    assert worker.tick(DAY1) == [("nightly", DAY1)]
    worker.idle()
    assert [e["scheduled_for"] for e in events(record, "ok")] == [DAY1.isoformat()]
    assert runs_of(store, "nightly")[DAY1].status is RunStatus.succeeded


def test_a_dead_workers_unstarted_claim_is_handed_over_and_runs_even_without_retries(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    add(store, params={"record": str(record)}, retries=0)
    dead = WorkerInfo("elsewhere:4242:deadbeef", "elsewhere", 4242, DAY1, DAY1, DAY1 + timedelta(seconds=30), "alive")
    store.heartbeat(dead)
    assert [c.scheduled_for for c in store.claim_due(DAY1, dead, 10).claims] == [DAY1]  # dies before its start
    live = make_worker()
    assert live.tick(DAY1 + timedelta(minutes=5)) == [("nightly", DAY1)]
    live.idle()
    run = runs_of(store, "nightly")[DAY1]
    assert (run.status, run.attempt, run.worker, run.error) == (RunStatus.succeeded, 1, live.identity.id, None)
    assert [r["scheduled_for"] for r in events(record, "ok")] == [DAY1.isoformat()]


# -- events --------------------------------------------------------------------------------


class Heard:
    """A listener that keeps what it hears (from the loop's thread and the runners')."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        with self._lock:
            return [e for e in self.events if type(e) is kind]


def test_a_run_is_reported_claimed_started_and_finished_with_its_lateness_and_duration(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    add(store, pipeline="pipelines_for_tests:ok", params={"record": str(record)})
    heard = Heard()
    worker = make_worker(listeners=(heard, log_event))
    worker.tick(DAY1 + timedelta(seconds=3))
    worker.idle()
    [claimed] = heard.of(RunClaimed)
    [started] = heard.of(RunStarted)
    [finished] = heard.of(RunFinished)
    assert (claimed.claim.schedule.name, claimed.claim.scheduled_for, claimed.lateness) == ("nightly", DAY1, 3.0)
    assert started.claim == claimed.claim and started.lateness >= 3.0
    assert finished.status is RunStatus.succeeded and finished.recorded is True
    assert finished.started_at == started.started_at and finished.lateness == started.lateness
    assert finished.duration is not None and finished.duration >= 0
    run = runs_of(store, "nightly")[DAY1]
    assert (run.started_at, run.finished_at) == (finished.started_at, finished.finished_at)  # what was stored
    # the runner reports start and end in that order; the claim is reported by the loop once
    # the run is handed over (not to delay its start), so it may come after the start
    order = [type(e) for e in heard.events if not isinstance(e, WorkerHeartbeat | RunClaimed)]
    assert order == [RunStarted, RunFinished]


def test_a_skipped_and_a_missed_fire_time_are_reported_as_such(
    store: ScheduleStore, make_worker: Callable[..., Ticking], gate: Path, record: Path
) -> None:
    add_gated(store, gate, record, Overlap.skip, catchup=CatchUp.none)
    heard = Heard()
    worker = make_worker(listeners=(heard,))
    worker.tick(at_minute(1))
    wait_until(lambda: events(record, "start"), "the first run to start")
    worker.tick(at_minute(2))
    wait_until(lambda: heard.of(RunSkipped), "the second fire time to be skipped")
    gate.touch()
    worker.idle()
    [skipped] = heard.of(RunSkipped)
    assert (skipped.claim.scheduled_for, skipped.status, skipped.started_at) == (
        at_minute(2),
        RunStatus.skipped,
        None,
    )
    assert "overlap: skip" in (skipped.error or "")
    # minutes 3 to 8 passed unclaimed, past their misfire grace: catch-up none runs none of them
    assert worker.tick(at_minute(9) + timedelta(seconds=30)) == [("busy", at_minute(9))]
    worker.idle()
    missed = heard.of(RunMissed)
    assert [m.scheduled_for for m in missed] == [at_minute(n) for n in range(3, 9)]
    assert all(m.schedule == "busy" and m.reason.startswith("no worker claimed it within") for m in missed)
    assert {r.scheduled_for for r in store.history("busy", 100) if r.status is RunStatus.missed} == {
        m.scheduled_for for m in missed
    }


def test_heartbeats_abandoned_runs_and_a_lost_lease_are_reported(
    store: ScheduleStore, make_worker: Callable[..., Ticking], gate: Path, record: Path, child_env: None
) -> None:
    add(store, pipeline="pipelines_for_tests:gated", params={"gate": str(gate), "record": str(record)})
    stalled_heard, reaper_heard = Heard(), Heard()
    stalled = make_worker(in_process=False, lease=30.0, listeners=(stalled_heard,))
    stalled.tick(DAY1)
    # the pipeline's first line: its child process exists (its start is recorded before the child is made)
    wait_until(lambda: events(record, "start"), "the pipeline to start")
    old_id = stalled.identity.id
    reaper = make_worker(listeners=(reaper_heard,))
    reaper.tick(DAY1 + timedelta(minutes=5))
    [abandoned] = reaper_heard.of(RunsAbandoned)
    assert [(r.schedule_name, r.scheduled_for, r.worker) for r in abandoned.runs] == [("nightly", DAY1, old_id)]
    assert reaper_heard.of(WorkerHeartbeat)[-1].worker.id == reaper.identity.id
    stalled.tick(DAY1 + timedelta(minutes=5, seconds=1))
    stalled.idle(20.0)
    [lost] = stalled_heard.of(LeaseLost)
    assert (lost.worker_id, lost.running, lost.new_id) == (old_id, 1, stalled.identity.id)
    beat = stalled_heard.of(WorkerHeartbeat)[-1]
    assert (beat.lease_kept, beat.worker.id) == (False, stalled.identity.id)


def test_a_listener_that_raises_is_logged_and_the_others_still_hear_every_event(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path, caplog: pytest.LogCaptureFixture
) -> None:
    add(store, pipeline="pipelines_for_tests:ok", params={"record": str(record)})

    def broken(event: Event) -> None:
        raise RuntimeError("a bug in a listener")

    heard = Heard()
    worker = make_worker(listeners=(broken, heard))
    worker.tick(DAY1)
    worker.idle()
    assert runs_of(store, "nightly")[DAY1].status is RunStatus.succeeded
    assert sorted(type(e).__name__ for e in heard.events if not isinstance(e, WorkerHeartbeat)) == [
        "RunClaimed",
        "RunFinished",
        "RunStarted",
    ]
    assert any("a listener of the worker's events failed on RunClaimed" in r.getMessage() for r in caplog.records)


def test_a_worker_declared_dead_goes_on_under_one_new_id_when_several_threads_notice_at_once(
    store: ScheduleStore, make_worker: Callable[..., Ticking], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the chaos test's stall: the loop's heartbeat and the runners' fenced starts each found
    # the lease lost; each took a new id, and a claim made under the first new id was then
    # refused by its own worker and closed, its hand-over lost
    heard = Heard()
    stalled = make_worker(listeners=(heard,))
    stalled.tick(DAY1)
    store.reap_abandoned(stalled.identity.lease_expires_at + timedelta(seconds=1))  # declared dead
    real = store.heartbeat

    def slow(worker: WorkerInfo) -> Any:
        time.sleep(0.2)  # a window in which the other thread notices too
        return real(worker)

    monkeypatch.setattr(store, "heartbeat", slow)
    noticing = [threading.Thread(target=stalled.worker._heartbeat, args=(DAY1,)) for _ in range(3)]
    for thread in noticing:
        thread.start()
    for thread in noticing:
        thread.join(10)
    assert len(heard.of(LeaseLost)) == 1
    alive = [w.id for w in store.list_workers() if w.status == "alive"]
    assert alive == [stalled.identity.id]  # one new id, and it is the one the worker goes on with


def test_a_stall_inside_the_write_of_a_start_that_outlasts_the_lease_starts_nothing(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the breaker's stall: the write took longer than the lease had left (a lock wait, a
    # SIGSTOP inside it); another worker may have declared this one dead meanwhile
    add(store, pipeline="pipelines_for_tests:ok", params={"record": str(record)})
    worker = make_worker(lease=1.0)
    real = store.start_attempt

    def stalled(*args: Any, **kwargs: Any) -> bool:
        time.sleep(1.5)  # longer than the 1 s lease
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "start_attempt", stalled)
    worker.tick(DAY1)
    worker.idle()
    run = runs_of(store, "nightly")[DAY1]
    assert (run.status, run.error) == (RunStatus.interrupted, STALLED)
    assert not record.exists()  # the pipeline never ran


# -- runs asked for: trigger and backfill ----------------------------------------------------


BERLIN_DAILY_2AM_FIRES = [
    datetime(2026, 3, 27, 1, 0, tzinfo=UTC),  # 02:00+01:00
    datetime(2026, 3, 28, 1, 0, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 02:00 does not exist that night: 03:00+02:00
    datetime(2026, 3, 30, 0, 0, tzinfo=UTC),  # 02:00+02:00
    datetime(2026, 3, 31, 0, 0, tzinfo=UTC),
]
"""Europe/Berlin daily 02:00 fire times in [2026-03-27T00:00+01:00, 2026-04-01T00:00+02:00)."""
AFTER_BACKFILL_RANGE = datetime(2026, 4, 2, 12, 0, tzinfo=UTC)


def asking(store: ScheduleStore, now: datetime) -> Scheduler:
    """The use cases a front end calls to ask for runs, at ``now``."""
    return Scheduler(store, clock=lambda: now)


def tick_until_ended(worker: Ticking, store: ScheduleStore, name: str, count: int) -> dict[datetime, Run]:
    """Rounds at the worker's clock until ``count`` runs of ``name`` have ended (a backfill
    hands out its next fire time as the one before ends)."""

    def ended() -> bool:
        worker.tick_on()
        worker.idle()
        done = [r for r in runs_of(store, name).values() if r.status not in (RunStatus.pending, RunStatus.running)]
        return len(done) >= count

    wait_until(ended, f"{count} runs of {name} to end")
    return runs_of(store, name)


def test_a_triggered_run_runs_at_once_on_a_paused_schedule_with_its_params_over_the_schedules(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    add(store, params={"record": str(record), "tag": "schedule's"})
    asking(store, CREATED).pause("nightly")
    now = CREATED + timedelta(hours=3, microseconds=250)
    run = asking(store, now).trigger("nightly", {"tag": "this run's"})
    assert (run.status, run.origin, run.scheduled_for, run.params) == (
        RunStatus.pending,
        RunOrigin.manual,
        now,
        {"tag": "this run's"},
    )
    worker = make_worker()
    assert worker.tick(now) == [("nightly", now)]
    worker.idle()
    ran = runs_of(store, "nightly")[now]
    assert (ran.status, ran.origin, ran.attempt) == (RunStatus.succeeded, RunOrigin.manual, 1)
    assert [(r["scheduled_for"], r["tag"]) for r in events(record, "ok")] == [(now.isoformat(), "this run's")]
    assert store.get("nightly").enabled is False  # the manual act left the schedule paused


def test_a_triggered_run_meets_the_overlap_policy_like_a_fire_time(
    store: ScheduleStore, make_worker: Callable[..., Ticking], gate: Path, record: Path
) -> None:
    add_gated(store, gate, record, Overlap.skip)
    worker = make_worker()
    worker.tick(at_minute(1))
    wait_until(lambda: events(record, "start"), "the scheduled run to start")
    asked = at_minute(1) + timedelta(seconds=20)
    asking(store, asked).trigger("busy")
    assert worker.tick(asked) == [("busy", asked)]
    wait_until(lambda: statuses(store, "busy").get(asked) is RunStatus.skipped, "the manual run to be skipped")
    gate.touch()
    worker.idle()
    manual = runs_of(store, "busy")[asked]
    assert manual.origin is RunOrigin.manual and "overlap: skip" in manual.error
    assert len(events(record, "start")) == 1


def test_a_trigger_at_one_of_the_schedules_fire_times_leaves_that_fire_time_to_the_schedule(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    add(store, params={"record": str(record)})
    run = asking(store, DAY1).trigger("nightly")
    assert run.scheduled_for == DAY1 + timedelta(microseconds=1)
    worker = make_worker()
    assert sorted(worker.tick(DAY1)) == [("nightly", DAY1), ("nightly", run.scheduled_for)]
    worker.idle()
    runs = runs_of(store, "nightly")
    assert [(r.origin, r.status) for _, r in sorted(runs.items())] == [
        (RunOrigin.schedule, RunStatus.succeeded),
        (RunOrigin.manual, RunStatus.succeeded),
    ]


def test_a_backfill_runs_each_fire_time_once_oldest_first_one_at_a_time_across_dst_and_a_second_runs_none(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    schedule = Schedule(
        name="berlin",
        pipeline="pipelines_for_tests:slow",
        trigger=DailyTrigger(2, 0),
        timezone="Europe/Berlin",
        params={"seconds": 0.05, "record": str(record)},
        policy=Policy(catchup=CatchUp.none),  # a backfill ignores catch-up and grace
    )
    created = datetime(2026, 3, 1, tzinfo=UTC)
    store.add(dataclasses.replace(schedule, next_fire_at=next_fire_at(schedule, AFTER_BACKFILL_RANGE)), created)
    start = datetime.fromisoformat("2026-03-27T00:00:00+01:00")
    end = datetime.fromisoformat("2026-04-01T00:00:00+02:00")
    first = asking(store, AFTER_BACKFILL_RANGE).backfill("berlin", start, end)
    assert [f.utc for f in first.fire_times] == first.queued == BERLIN_DAILY_2AM_FIRES
    assert first.fire_times[2].at.isoformat() == "2026-03-29T03:00:00+02:00"
    worker = make_worker(max_concurrent=4)
    assert worker.tick(AFTER_BACKFILL_RANGE) == [("berlin", BERLIN_DAILY_2AM_FIRES[0])]  # one at a time
    runs = tick_until_ended(worker, store, "berlin", 5)
    assert sorted(runs) == BERLIN_DAILY_2AM_FIRES
    assert {(r.status, r.origin, r.attempt) for r in runs.values()} == {(RunStatus.succeeded, RunOrigin.backfill, 1)}
    starts, ends = events(record, "start"), events(record, "end")
    assert [r["scheduled_for"] for r in starts] == [at.isoformat() for at in BERLIN_DAILY_2AM_FIRES]
    assert all(later["at"] >= earlier["at"] for earlier, later in zip(ends, starts[1:], strict=False))
    again = asking(store, AFTER_BACKFILL_RANGE).backfill("berlin", start, end)
    assert again.queued == [] and [r.scheduled_for for r in again.kept] == BERLIN_DAILY_2AM_FIRES
    assert worker.tick_on() == []
    assert len(events(record, "start")) == 5


def test_a_backfill_asks_again_for_fire_times_recorded_missed_and_leaves_the_others(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    add(store, params={"record": str(record)})
    days = [DAY1 + timedelta(days=n) for n in range(3)]
    store.record_run(Run("nightly", days[0], RunStatus.succeeded))
    store.record_run(Run("nightly", days[1], RunStatus.missed, error="missed: no worker claimed it"))
    now = days[2] + timedelta(hours=1)
    dry = asking(store, now).backfill("nightly", DAY1, days[2] + timedelta(seconds=1), dry_run=True)
    assert (dry.queued, [r.scheduled_for for r in dry.kept]) == ([days[1], days[2]], [days[0]])
    assert set(runs_of(store, "nightly")) == {days[0], days[1]}  # a dry run stores nothing
    done = asking(store, now).backfill("nightly", DAY1, days[2] + timedelta(seconds=1))
    assert done.queued == [days[1], days[2]]
    worker = make_worker()
    worker.tick(now)
    runs = tick_until_ended(worker, store, "nightly", 3)
    assert [(r.status, r.origin, r.error) for _, r in sorted(runs.items())] == [
        (RunStatus.succeeded, RunOrigin.schedule, None),
        (RunStatus.succeeded, RunOrigin.backfill, None),
        (RunStatus.succeeded, RunOrigin.backfill, None),
    ]
    assert [r["scheduled_for"] for r in events(record, "ok")] == [days[1].isoformat(), days[2].isoformat()]


def test_two_workers_never_run_two_fire_times_of_one_backfill_at_once(
    store: ScheduleStore, make_worker: Callable[..., Ticking], gate: Path, record: Path
) -> None:
    add_gated(store, gate, record, Overlap.skip, trigger=DailyTrigger(9, 0))
    now = DAY1 + timedelta(days=2, hours=23)  # the schedule's own fire times are all in the backfill
    asking(store, now).backfill("busy", DAY1, now)
    workers = [make_worker(max_concurrent=4), make_worker(max_concurrent=4)]
    assert sum(len(claimed) for claimed in tick_together(workers, now)) == 1
    wait_until(lambda: events(record, "start"), "the first fire time to start")
    assert sum(len(claimed) for claimed in tick_together(workers, now)) == 0  # the others wait their turn
    gate.touch()

    def all_ended() -> bool:
        for worker in workers:
            worker.idle()
        tick_together(workers, now)
        return set(statuses(store, "busy").values()) == {RunStatus.succeeded} and len(statuses(store, "busy")) == 3

    wait_until(all_ended, "the three fire times to run")
    starts, ends = events(record, "start"), events(record, "end")
    assert [r["scheduled_for"] for r in starts] == [(DAY1 + timedelta(days=n)).isoformat() for n in range(3)]
    assert all(later["at"] >= earlier["at"] for earlier, later in zip(ends, starts[1:], strict=False))


def test_a_backfill_of_a_schedule_that_allows_overlap_runs_its_fire_times_together(
    store: ScheduleStore, make_worker: Callable[..., Ticking], gate: Path, record: Path
) -> None:
    add_gated(store, gate, record, Overlap.allow, trigger=DailyTrigger(9, 0))
    now = DAY1 + timedelta(days=2, hours=1)
    asking(store, now).backfill("busy", DAY1, now)
    worker = make_worker(max_concurrent=4)
    assert sorted(worker.tick(now)) == [("busy", DAY1 + timedelta(days=n)) for n in range(3)]
    wait_until(lambda: len(events(record, "start")) == 3, "the three to start together")
    assert events(record, "end") == []
    gate.touch()
    worker.idle()
    assert set(statuses(store, "busy").values()) == {RunStatus.succeeded}


def test_removing_a_schedule_closes_its_requests_and_retries_and_a_new_one_of_that_name_may_backfill_them(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    add(store)
    before = DAY1 - timedelta(days=1)
    store.record_run(Run("nightly", before, RunStatus.failed, error="boom", retry_at=DAY1, origin=RunOrigin.backfill))
    now = CREATED + timedelta(days=3, microseconds=5)
    asking(store, now).trigger("nightly")
    asking(store, now).backfill("nightly", DAY1, DAY1 + timedelta(days=2))
    asking(store, now).remove("nightly")
    add(store, params={"record": str(record)}, created=now)  # another schedule under the old name
    assert make_worker().tick(now) == []
    closed = runs_of(store, "nightly")
    assert {
        (r.status, r.error, r.retry_at) for at, r in closed.items() if at in (now, DAY1, DAY1 + timedelta(days=1))
    } == {(RunStatus.missed, "not run: the schedule was removed", None)}
    assert (closed[before].status, closed[before].error, closed[before].retry_at) == (
        RunStatus.failed,
        "boom\nno retry: the schedule was removed",
        None,
    )
    assert events(record, "ok") == []
    again = asking(store, now).backfill("nightly", DAY1, DAY1 + timedelta(days=2))
    assert again.queued == [DAY1, DAY1 + timedelta(days=1)]  # never ran: the new schedule may run them


def test_a_backfill_of_older_fire_times_takes_the_turn_from_a_later_one_not_taken_yet(
    store: ScheduleStore, make_worker: Callable[..., Ticking]
) -> None:
    add(store)
    now = DAY1 + timedelta(days=5, hours=1)
    asking(store, now).backfill("nightly", DAY1 + timedelta(days=3), now)
    asking(store, now).backfill("nightly", DAY1, DAY1 + timedelta(days=2))
    due = [r.scheduled_for for r in store.history("nightly") if r.retry_at is not None]
    assert due == [DAY1]
    assert make_worker().tick(now) == [("nightly", DAY1)]  # the schedule's own are in the first backfill


def test_a_backfill_of_thousands_of_fire_times_makes_one_due_at_a_time_and_history_pruning_keeps_them(
    store: ScheduleStore, make_worker: Callable[..., Ticking]
) -> None:
    add(store, trigger=CronTrigger("* * * * *"), created=CREATED - timedelta(days=30))
    asking(store, CREATED).pause("nightly")  # only the backfill runs
    now = CREATED + timedelta(days=1)
    asked = asking(store, now).backfill("nightly", CREATED - timedelta(days=3), CREATED, max_runs=5000)
    assert len(asked.queued) == 3 * 24 * 60
    due = [r for r in store.history("nightly", 5000) if r.retry_at is not None]
    assert [r.scheduled_for for r in due] == [CREATED - timedelta(days=3)]  # the rest wait for their turn
    store.prune_history(keep=10, older_than=now)  # waiting fire times are not history to prune
    assert sum(r.status is RunStatus.pending for r in store.history("nightly", 5000)) == 3 * 24 * 60
    worker = make_worker()
    assert worker.tick(now) == [("nightly", CREATED - timedelta(days=3))]
    worker.idle()
    assert worker.tick_on() == [("nightly", CREATED - timedelta(days=3) + timedelta(minutes=1))]
    worker.idle()
    assert store.next_due_at() == CREATED - timedelta(days=3) + timedelta(minutes=2)


def test_a_backfill_run_waiting_for_the_lock_when_its_worker_stops_is_handed_to_another_worker(
    store: ScheduleStore, make_worker: Callable[..., Ticking], gate: Path, record: Path
) -> None:
    add_gated(store, gate, record, Overlap.skip, trigger=DailyTrigger(9, 0))
    stopping = make_worker()
    assert stopping.tick(DAY1) == [("busy", DAY1)]
    wait_until(lambda: events(record, "start"), "the scheduled run to start")
    asking(store, DAY1 + timedelta(minutes=1)).backfill("busy", DAY1 - timedelta(days=1), DAY1)
    earlier = DAY1 - timedelta(days=1)
    assert stopping.tick(DAY1 + timedelta(minutes=1)) == [("busy", earlier)]
    assert not stopping.worker.wait_idle(0.3)  # waits for the lock: neither skipped nor run beside
    stopping.worker.request_stop()
    wait_until(lambda: runs_of(store, "busy")[earlier].retry_at is not None, "the backfill run to be handed over")
    gate.touch()
    stopping.worker.run()  # drains (the scheduled run ends) and records the worker stopped
    stopping.stopped = True
    taker = make_worker()
    assert taker.tick(DAY1 + timedelta(minutes=2)) == [("busy", earlier)]
    taker.idle()
    run = runs_of(store, "busy")[earlier]
    assert (run.status, run.origin, run.attempt, run.worker) == (
        RunStatus.succeeded,
        RunOrigin.backfill,
        1,
        taker.identity.id,
    )


def test_run_once_runs_a_whole_backfill_one_fire_time_after_another(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    add(store, pipeline="pipelines_for_tests:slow", params={"seconds": 0.05, "record": str(record)})
    now = DAY1 + timedelta(days=2, hours=1)
    assert asking(store, now).backfill("nightly", DAY1, now - timedelta(hours=1)).queued == [
        DAY1,
        DAY1 + timedelta(days=1),
    ]
    worker = make_worker()
    worker.clock.set(now)
    assert worker.worker.run(once=True) == 0
    worker.stopped = True
    assert statuses(store, "nightly") == {
        DAY1: RunStatus.succeeded,
        DAY1 + timedelta(days=1): RunStatus.succeeded,
        DAY1 + timedelta(days=2): RunStatus.succeeded,  # due now: the schedule's own
    }
    backfilled = (DAY1.isoformat(), (DAY1 + timedelta(days=1)).isoformat())
    starts = [r for r in events(record, "start") if r["scheduled_for"] in backfilled]
    ends = [r for r in events(record, "end") if r["scheduled_for"] in backfilled]
    assert [r["scheduled_for"] for r in starts] == list(backfilled)
    assert starts[1]["at"] >= ends[0]["at"]


def test_claims_whose_commit_the_worker_saw_fail_are_handed_over_and_run_once(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if store.dialect != "postgresql":
        pytest.skip("SQLite's COMMIT is a call in this process: its answer cannot be lost")
    add(store, params={"record": str(record)})
    worker = make_worker()
    claim_due = store.claim_due

    def commits_then_fails(*args: Any, **kwargs: Any) -> Any:
        claim_due(*args, **kwargs)  # the COMMIT went through, the answer did not
        raise StoreError(store.location, "lost the connection to the server")

    monkeypatch.setattr(store, "claim_due", commits_then_fails)
    with pytest.raises(StoreError):
        worker.tick(DAY1)
    assert runs_of(store, "nightly")[DAY1].status is RunStatus.running  # claimed, and nobody knows
    monkeypatch.setattr(store, "claim_due", claim_due)
    assert worker.tick(DAY1 + timedelta(seconds=1)) == [("nightly", DAY1)]  # handed over, taken back
    worker.idle()
    run = runs_of(store, "nightly")[DAY1]
    assert (run.status, run.attempt, run.error) == (RunStatus.succeeded, 1, None)
    assert [r["scheduled_for"] for r in events(record, "ok")] == [DAY1.isoformat()]


def test_taking_ones_own_retry_again_after_a_lost_answer_gives_the_same_attempt(store: ScheduleStore) -> None:
    add(store, retries=2)
    now = DAY1 + timedelta(minutes=5)
    me = WorkerInfo("w1", "host", 1, now, now, now + timedelta(hours=1), "alive")
    store.heartbeat(me)
    store.record_run(Run("nightly", DAY1, RunStatus.failed, error="boom", retry_at=now, worker="w1", started_at=DAY1))
    (row,) = store.history("nightly")
    assert store.retry_run(row.id, me, 1) == (2, RunStatus.failed)
    assert store.retry_run(row.id, me, 1) == (2, RunStatus.failed)  # the same call again: the same answer
    other = dataclasses.replace(me, id="w2")
    store.heartbeat(other)
    assert store.retry_run(row.id, other, 1) is None


# -- exclusions ----------------------------------------------------------------------------------

NEW_YORK = ZoneInfo("America/New_York")
WEEKDAY_REPORT = """\
version: 1
schedules:
  - name: weekday-report
    pipeline: pipelines_for_tests:ok_with_scheduled_for
    params: {{record: "{record}"}}
    cron: "{cron}"
    timezone: America/New_York
    catchup: {catchup}
    exclude:
      holidays: {{country: US, subdivision: NY}}
      dates: ["2026-12-24", "2026-12-31"]
      ranges: [{{from: "2026-08-03", to: "2026-08-14"}}]
    on_excluded: {on_excluded}
"""
"""The issue's example, run by the test pipeline that records its fire time."""


def nine_am(day: int, month: int = 11) -> datetime:
    return datetime(2026, month, day, 9, 0, tzinfo=NEW_YORK).astimezone(UTC)


def apply_weekday_report(store: ScheduleStore, tmp_path: Path, record: Path, **fields: str) -> None:
    spec = tmp_path / "schedules.yaml"
    values = {"cron": "0 9 * * 1-5", "catchup": "latest", "on_excluded": "skip", **fields}
    spec.write_text(WEEKDAY_REPORT.format(record=record, **values))
    created = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    Scheduler(store, clock=lambda: created).apply_file(str(spec), prune=False, dry_run=False, check_pipelines=False)


def test_the_issues_weekday_report_runs_on_the_business_days_of_thanksgiving_week_only(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path, tmp_path: Path
) -> None:
    apply_weekday_report(store, tmp_path, record)
    worker = make_worker()

    claims = []
    for day in (23, 24, 25, 26, 27, 30):  # Mon to Fri, Thanksgiving on Thursday, and Monday
        claims.append(worker.tick(nine_am(day)))
        worker.idle()

    assert claims == [[("weekday-report", nine_am(d))] if d != 26 else [] for d in (23, 24, 25, 26, 27, 30)]
    assert [r["scheduled_for"] for r in events(record, "ok")] == [nine_am(d).isoformat() for d in (23, 24, 25, 27, 30)]
    assert statuses(store, "weekday-report") == {nine_am(d): RunStatus.succeeded for d in (23, 24, 25, 27, 30)}
    assert store.get("weekday-report").next_fire_at == nine_am(1, 12)


def test_after_downtime_over_a_holiday_catch_up_runs_only_the_fire_times_not_excluded(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path, tmp_path: Path
) -> None:
    apply_weekday_report(store, tmp_path, record, catchup="all")
    worker = make_worker()
    worker.tick(nine_am(23))
    worker.idle()

    back = datetime(2026, 11, 27, 12, 0, tzinfo=NEW_YORK).astimezone(UTC)  # down Tuesday to Friday noon
    claims = worker.tick(back)
    worker.idle()

    assert claims == [("weekday-report", nine_am(d)) for d in (24, 25, 27)]  # Thanksgiving is no fire time
    assert statuses(store, "weekday-report") == {nine_am(d): RunStatus.succeeded for d in (23, 24, 25, 27)}


def test_a_thursday_report_moved_to_the_next_business_day_runs_on_friday_for_its_moved_fire_time(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path, tmp_path: Path
) -> None:
    apply_weekday_report(store, tmp_path, record, cron="0 9 * * 4", on_excluded="next_business_day")
    worker = make_worker()

    on_thanksgiving = worker.tick(nine_am(26) + timedelta(hours=1))
    on_friday = worker.tick(nine_am(27))
    worker.idle()

    assert (on_thanksgiving, on_friday) == ([], [("weekday-report", nine_am(27))])
    assert [r["scheduled_for"] for r in events(record, "ok")] == [nine_am(27).isoformat()]
    assert statuses(store, "weekday-report") == {nine_am(27): RunStatus.succeeded}
    assert store.get("weekday-report").next_fire_at == nine_am(3, 12)


def test_a_lease_lost_between_a_runs_fenced_start_and_its_child_stops_that_child_before_its_first_line(
    store: ScheduleStore,
    make_worker: Callable[..., Ticking],
    gate: Path,
    record: Path,
    child_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The heartbeat that finds the lease lost stops the children it knows of; a child made
    just after (its fenced start went through before the loss) is stopped as soon as it exists."""
    import flowyml_sched.worker.execution as execution

    add(store, pipeline="pipelines_for_tests:gated", params={"gate": str(gate), "record": str(record)})
    worker = make_worker(in_process=False, lease=30.0)
    made = execution.ChildRun

    def lease_lost_meanwhile(*args: Any, **kwargs: Any) -> Any:
        worker.worker._lost_lease(worker.clock())  # as the heartbeat thread would, right now
        return made(*args, **kwargs)

    monkeypatch.setattr(execution, "ChildRun", lease_lost_meanwhile)
    worker.tick(DAY1)
    worker.idle(30.0)

    assert events(record, "start") == []
    run = runs_of(store, "nightly")[DAY1]
    assert run.status is RunStatus.interrupted and "lease expired" in (run.error or "")


def test_a_schedule_whose_exclusions_leave_no_fire_time_ahead_runs_its_last_and_holds_up_no_other(
    store: ScheduleStore, make_worker: Callable[..., Ticking], record: Path
) -> None:
    from flowyml_sched.exclusions import Exclusions

    last_years = tuple(date(year, 6, 15) for year in range(2027, 2040))  # every later fire time excluded
    yearly = Schedule(
        "yearly",
        "pipelines_for_tests:ok_with_scheduled_for",
        CronTrigger("0 9 15 6 *"),
        "UTC",
        params={"record": str(record)},
        exclusions=Exclusions(dates=last_years),
    )
    store.add(dataclasses.replace(yearly, next_fire_at=next_fire_at(yearly, CREATED)), CREATED)
    add(store, params={"record": str(record)})
    june = datetime(2026, 6, 15, 9, 0, tzinfo=UTC)
    worker = make_worker()

    claims = worker.tick(june)
    worker.idle()

    assert sorted(claims) == [("nightly", june), ("yearly", june)]
    assert statuses(store, "yearly") == {june: RunStatus.succeeded}
    assert store.get("yearly").next_fire_at is None
    assert worker.tick(june + timedelta(days=1)) == [("nightly", june + timedelta(days=1))]


def test_a_due_schedule_with_no_fire_time_after_it_can_still_be_paused_and_removed(store: ScheduleStore) -> None:
    from flowyml_sched.exclusions import Exclusions

    june = datetime(2026, 6, 15, 9, 0, tzinfo=UTC)
    yearly = Schedule(
        "yearly",
        "pipelines_for_tests:ok",
        CronTrigger("0 9 15 6 *"),
        "UTC",
        exclusions=Exclusions(dates=tuple(date(year, 6, 15) for year in range(2027, 2040))),
    )
    store.add(dataclasses.replace(yearly, next_fire_at=june), CREATED)
    scheduler = Scheduler(store, clock=lambda: june + timedelta(hours=1))

    scheduler.pause("yearly", "no more")
    assert statuses(store, "yearly") == {june: RunStatus.missed}
    scheduler.remove("yearly")
    assert store.entries() == []
