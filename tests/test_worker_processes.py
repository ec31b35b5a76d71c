"""The issue's "must hold" list, with real worker processes.

Every test starts ``flowyml-sched run-worker`` as subprocesses against a real SQLite file
and the real PostgreSQL server (one schema per test; see ``conftest.py``), drives them the
way an operator would (the CLI, signals, ``kill -9``) and checks the store afterwards.

These are real processes, so the tests wait for *conditions* with a deadline
(:func:`wait_until`: "the run is recorded", "the child is gone"), never for a guessed
amount of time. The few fixed waits left are the point of the test: the stress run lasts
:data:`STRESS_SECONDS`, and "nothing happens while paused" is watched for a while.

Every worker is started in a session of its own and killed in the fixture's teardown,
together with any pipeline process still alive, whatever the test's outcome.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pipelines_for_tests import pythonpath, read_records

from flowyml_sched.executor import DEFAULT_MAX_LOG_BYTES
from flowyml_sched.model import CatchUp, Policy, Run, RunStatus, Schedule
from flowyml_sched.store import ScheduleStore, open_store
from flowyml_sched.timing import next_fire_time
from flowyml_sched.triggers import DailyTrigger, IntervalTrigger, Trigger

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

STRESS_SECONDS = float(os.environ.get("FLOWYML_STRESS_SECONDS", "30"))
"""How long the many-workers stress test lets 50 schedules fire: 30 s (about 1,100 fire times
per store) keeps the suite under its 10 minutes beside two CPU hogs; the issue that asked
for this test asked for 60 s, which ``FLOWYML_STRESS_SECONDS=60`` runs."""
STRESS_WORKERS = 4
STRESS_SCHEDULES = 50
STOP_MARGIN = 1.0
"""Seconds before SIGTERM from which a fire time may go unclaimed: the workers stop claiming
the moment the signal lands, so a fire time due a few milliseconds earlier may be left for
the next worker to start. Everything due earlier must have run."""

T = TypeVar("T")

_CLI = Path(sys.executable).with_name("flowyml-sched")
CLI = str(_CLI) if _CLI.exists() else (shutil.which("flowyml-sched") or "flowyml-sched")


def utc_now() -> datetime:
    return datetime.now(UTC)


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something true (and return that), or fail after
    ``timeout`` seconds saying what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def process_gone(pid: int) -> bool:
    """True when ``pid`` is no longer running (absent, or a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _is_pipeline_process(pid: int) -> bool:
    try:
        return b"flowyml_sched.runner" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class WorkerProcess:
    """One ``flowyml-sched run-worker`` subprocess; its output goes to ``log_path``."""

    def __init__(self, popen: subprocess.Popen[bytes], log_path: Path):
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker {self.pid} did not exit within {timeout:g} s; its log ends:\n{self.log_tail()}"
            ) from None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit status (failing when it takes longer than ``timeout``)."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


class Cluster:
    """A store, a state directory (locks, run logs) shared by the workers it starts, a record
    file for the pipelines, and the CLI pointed at that store."""

    def __init__(self, url: str, root: Path):
        self.url = url
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.state_dir = root / "worker-state"
        self.record = root / "record.jsonl"
        self.store: ScheduleStore = open_store(url)  # creates the schema before any worker starts
        self.workers: list[WorkerProcess] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWYML_SCHEDULER_")}
        env.pop("NOTIFY_SOCKET", None)
        env.pop("JOURNAL_STREAM", None)
        env.update(PYTHONPATH=pythonpath(), PYTHONUNBUFFERED="1", NO_COLOR="1")
        self.env = env

    # -- processes ---------------------------------------------------------------------------

    def start_worker(self, *options: str) -> WorkerProcess:
        log_path = self.root / f"worker-{len(self.workers)}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                [CLI, "run-worker", "--db-url", self.url, "--state-dir", str(self.state_dir), *options],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        worker = WorkerProcess(popen, log_path)
        self.workers.append(worker)
        return worker

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, *args, "--db-url", self.url], capture_output=True, text=True, env=self.env, timeout=timeout
        )

    def history_json(self, name: str) -> list[dict[str, Any]]:
        result = self.cli("history", name, "--limit", "1000", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def close(self) -> None:
        """Kill whatever is still running (workers, then any pipeline process), show the logs."""
        for worker in self.workers:
            if worker.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.popen.wait(10)
        pids = {r["pid"] for r in read_records(self.record) if "pid" in r}
        with contextlib.suppress(Exception):
            pids |= {r.pid for r in self.runs() if r.pid}
        for pid in sorted(pids):
            if not process_gone(pid) and _is_pipeline_process(pid):
                print(f"killing a leftover pipeline process {pid}")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        for worker in self.workers:  # shown by pytest when the test failed
            print(f"--- worker {worker.pid} (exit {worker.popen.returncode}) log tail ---\n{worker.log_tail()}")
        self.store.close()

    # -- the store ---------------------------------------------------------------------------

    def add(
        self,
        name: str,
        pipeline: str,
        *,
        params: dict[str, Any] | None = None,
        policy: Policy | None = None,
        trigger: Trigger | None = None,
        next_fire_at: datetime | None = None,
    ) -> Schedule:
        """Store a schedule of ``pipelines_for_tests:<pipeline>``. Default: hourly from now and
        due at once (``next_fire_at`` = now), so the first worker to poll claims it."""
        now = utc_now()
        trigger = trigger or IntervalTrigger(timedelta(hours=1), now)
        schedule = Schedule(
            name=name,
            pipeline=f"pipelines_for_tests:{pipeline}",
            trigger=trigger,
            params=params or {},
            policy=policy or Policy(),
            next_fire_at=next_fire_at or now,
        )
        return self.store.add(schedule, now)

    def runs(self, name: str | None = None) -> list[Run]:
        found = self.store.runs_since(EPOCH)
        return [r for r in found if name is None or r.schedule_name == name]

    def live_workers(self) -> list[str]:
        now = utc_now()
        return [w.id for w in self.store.list_workers() if w.status == "alive" and w.lease_expires_at >= now]

    def records(self, event: str | None = None, tag: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in read_records(self.record)
            if (event is None or r["event"] == event) and (tag is None or r.get("tag") == tag)
        ]


@pytest.fixture
def cluster(store_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """A :class:`Cluster` on a fresh store, once on SQLite and once on PostgreSQL."""
    opened = Cluster(store_url, tmp_path)
    try:
        yield opened
    finally:
        opened.close()


def _key(name: str, at: datetime | str) -> tuple[str, datetime]:
    when = datetime.fromisoformat(at) if isinstance(at, str) else at
    return name, when.astimezone(UTC)


def _fire_times(anchor: datetime, every: timedelta, until: datetime) -> list[datetime]:
    """``anchor + k * every`` for k >= 0, up to and including ``until``."""
    out = []
    at = anchor
    while at <= until:
        out.append(at)
        at += every
    return out


# -- 1. many workers, many schedules: every fire time exactly once -----------------------------


@pytest.mark.slow
def test_many_workers_run_every_fire_time_exactly_once(sqlite_url: str, postgresql_url: str, tmp_path: Path) -> None:
    # both stores in the same window, each with its own workers: 60 s of the suite, not 120
    clusters = [Cluster(url, tmp_path / name) for name, url in (("sqlite", sqlite_url), ("postgresql", postgresql_url))]
    try:
        started = [_start_stress(cluster) for cluster in clusters]
        stop_at = max(base for _, _, base in started) + timedelta(seconds=STRESS_SECONDS)
        workers = [worker for batch, _, _ in started for worker in batch]
        while utc_now() < stop_at:  # the run's length is the point here; fail early if a worker dies
            assert all(w.alive() for w in workers), [w.log_tail() for w in workers if not w.alive()]
            time.sleep(min(1.0, max(0.0, (stop_at - utc_now()).total_seconds())))
        stopped_at = utc_now()
        for worker in workers:
            worker.signal(signal.SIGTERM)
        assert [w.wait(60) for w in workers] == [0] * len(workers)
        for cluster, (_, schedules, _) in zip(clusters, started, strict=True):
            _check_stress(cluster, schedules, stopped_at)
    finally:
        for cluster in clusters:
            cluster.close()


def _start_stress(cluster: Cluster) -> tuple[list[WorkerProcess], list[Schedule], datetime]:
    """Start the stress test's workers on ``cluster`` and store its 50 schedules; returns the
    workers, the schedules and their first fire time."""
    # --in-process: 50 schedules every 1-2 s are ~37 runs a second; on a 2-core machine a fresh
    # Python child process per run (~0.1-0.3 s of CPU each) cannot keep up, and what is tested
    # here is the claiming (exactly once across 4 processes), not the child-process executor.
    workers = [
        cluster.start_worker("--in-process", "--max-concurrent", "8", "--poll-interval", "0.5")
        for _ in range(STRESS_WORKERS)
    ]
    wait_until(lambda: len(cluster.live_workers()) == STRESS_WORKERS, 60, f"{STRESS_WORKERS} workers to heartbeat")
    base = utc_now().replace(microsecond=0) + timedelta(seconds=2)
    schedules = []
    for i in range(STRESS_SCHEDULES):
        name = f"stress-{i:02d}"
        anchor = base + timedelta(milliseconds=20 * i)  # spread over the second, like real schedules
        schedules.append(
            Schedule(
                name=name,
                pipeline="pipelines_for_tests:ok_with_scheduled_for",
                trigger=IntervalTrigger(timedelta(seconds=1 + i % 2), anchor),
                params={"record": str(cluster.record), "tag": name},
                next_fire_at=anchor,  # default policy: overlap "skip"
            )
        )
    cluster.store.apply(schedules, [], [], utc_now())
    return workers, schedules, base


def _check_stress(cluster: Cluster, schedules: list[Schedule], stopped_at: datetime) -> None:
    """The stress test's checks on one cluster, once its workers stopped at ``stopped_at``."""
    runs = cluster.runs()
    stored = {s.name: s for s in cluster.store.list()}
    keys = Counter(_key(r.schedule_name, r.scheduled_for) for r in runs)
    assert max(keys.values()) == 1, "two history rows for one fire time"
    statuses = Counter(r.status.value for r in runs)
    assert set(statuses) <= {"succeeded", "skipped"}, statuses
    skipped = [r for r in runs if r.status is RunStatus.skipped]
    by_key = {_key(r.schedule_name, r.scheduled_for): r for r in runs}
    for run in skipped:
        # Overlap "skip" may rightly skip a fire time when the run before it still holds the
        # run lock a second later, which only an overloaded machine (two CPU hogs beside
        # pytest -n 2 on 2 cores) does; never often. (When the run before it records its start
        # is no evidence: the fenced start is written after the lock is taken, and under that
        # load more than a second after.) Fire times claimed in one round run one after the
        # other (tests/test_worker_tick.py, the catch-up tests), never skipped.
        every = next(s.trigger.every for s in schedules if s.name == run.schedule_name)
        previous = by_key.get(_key(run.schedule_name, run.scheduled_for - every))
        assert previous is not None and previous.status is RunStatus.succeeded, run
        # a skipped fire time never starts (its row has no started_at); the one before it did
        assert previous.started_at is not None and run.started_at is None and run.finished_at is not None, run
    assert len(skipped) <= len(runs) // 100, f"{len(skipped)} fire times skipped"

    executed = Counter(_key(r["tag"], r["scheduled_for"]) for r in cluster.records("ok"))
    twice = {k: n for k, n in executed.items() if n > 1}
    assert not twice, f"fire times executed more than once: {sorted(twice)[:10]}"
    succeeded = {k for k, r in by_key.items() if r.status is RunStatus.succeeded}
    assert set(executed) == succeeded, "a run recorded without an execution, or the other way round"

    missing = []
    for schedule in schedules:
        trigger = schedule.trigger
        assert isinstance(trigger, IntervalTrigger)
        # everything the window demands, and everything the workers moved past, ran
        until = max(stopped_at - timedelta(seconds=STOP_MARGIN), stored[schedule.name].next_fire_at - trigger.every)
        expected = _fire_times(trigger.anchor, trigger.every, until)
        missing += [k for k in (_key(schedule.name, at) for at in expected) if k not in keys]
    assert not missing, f"{len(missing)} fire times never ran, first: {sorted(missing)[:10]}"

    started = [r for r in runs if r.started_at is not None]  # a skipped run claimed ahead never started
    assert {r.status for r in runs if r.started_at is None} <= {RunStatus.skipped}
    lateness = sorted((r.started_at - r.scheduled_for).total_seconds() for r in started)
    early = [r for r in started if r.started_at < r.scheduled_for]
    assert not early, f"runs started before their fire time (claimed ahead): {early[:5]}"
    per_worker = Counter(r.worker for r in runs)
    assert len(per_worker) >= 2, f"one worker claimed everything: {per_worker}"
    assert all(w.status == "stopped" for w in cluster.store.list_workers())
    print(
        f"\n{cluster.store.dialect}: {len(runs)} runs ({len(skipped)} skipped) in {STRESS_SECONDS:g} s "
        f"by {len(per_worker)} workers "
        f"{sorted(per_worker.values())}; lateness p50 {lateness[len(lateness) // 2]:.3f} s, "
        f"p99 {lateness[math.ceil(0.99 * len(lateness)) - 1]:.3f} s, max {lateness[-1]:.3f} s"
    )


# -- 2. kill -9 of a worker mid-run ------------------------------------------------------------


def test_killed_worker_runs_are_abandoned_then_retried_or_left(cluster: Cluster) -> None:
    record = str(cluster.record)
    cluster.add(
        "retried",
        "slow",
        params={"seconds": 3, "record": record, "tag": "retried"},
        policy=Policy(retries=1, retry_backoff=timedelta(0)),
    )
    cluster.add("not-retried", "slow", params={"seconds": 3, "record": record, "tag": "not-retried"})
    doomed = cluster.start_worker("--lease", "3", "--poll-interval", "0.2")
    first = wait_until(
        lambda: (starts := cluster.records("start")) and len(starts) == 2 and {r["tag"]: r["pid"] for r in starts},
        30,
        "both slow pipelines to start on the first worker",
    )
    claimed = {r.schedule_name: r for r in cluster.runs()}
    for name in ("retried", "not-retried"):
        assert claimed[name].status is RunStatus.running
        assert claimed[name].worker is not None and f":{doomed.pid}:" in claimed[name].worker
        assert claimed[name].pid == first[name]  # the run row names the pipeline's process

    survivor = cluster.start_worker("--lease", "3", "--poll-interval", "0.2")
    os.kill(doomed.pid, signal.SIGKILL)
    # the killed worker's pipeline processes die with it (PR_SET_PDEATHSIG): no second copy
    # of a fire time can run while a retry starts elsewhere
    wait_until(lambda: all(process_gone(pid) for pid in first.values()), 5, "the killed worker's children to die")
    children_gone_at = time.time()
    assert doomed.wait(5) == -signal.SIGKILL

    retried = wait_until(
        lambda: (rows := cluster.runs("retried")) and rows[0].status is RunStatus.succeeded and rows[0],
        30,
        "the survivor to retry the abandoned run",
    )
    assert retried.attempt == 2
    assert retried.worker is not None and f":{survivor.pid}:" in retried.worker
    assert retried.error is not None and retried.error.startswith("attempt 1: abandoned"), retried.error
    assert "stopped heartbeating" in retried.error
    assert "2 of their runs abandoned" in survivor.log()
    dead = [w for w in cluster.store.list_workers() if w.pid == doomed.pid]
    assert len(dead) == 1 and dead[0].status == "dead"
    assert retried.started_at is not None and retried.started_at >= dead[0].lease_expires_at, (
        "reaped before the lease ran out"
    )

    left = cluster.runs("not-retried")
    assert [(r.status, r.attempt) for r in left] == [(RunStatus.abandoned, 1)]
    assert left[0].error is not None and left[0].error.startswith("worker "), left[0].error

    starts = cluster.records("start", "retried")
    ends = cluster.records("end", "retried")
    assert len(starts) == 2 and starts[0]["pid"] == first["retried"]
    assert [r["pid"] for r in ends] == [starts[1]["pid"]], "the killed attempt must never finish"
    assert starts[1]["at"] > children_gone_at, "the retry started while the first attempt was still alive"
    assert cluster.records("end", "not-retried") == []

    # the dead worker's file lock was freed by the OS: a new run of that schedule starts (not skipped)
    schedule = cluster.store.get("not-retried")
    now = utc_now()
    cluster.store.replace(replace(schedule, params={**schedule.params, "seconds": 0.1}, next_fire_at=now), now)
    fresh = wait_until(
        lambda: [r for r in cluster.runs("not-retried") if r.status not in (RunStatus.running, RunStatus.abandoned)],
        30,
        "a new run of the schedule whose worker was killed",
    )
    assert [r.status for r in fresh] == [RunStatus.succeeded], fresh[0].error
    assert survivor.stop() == 0


# -- 3. a run longer than its interval ---------------------------------------------------------


def test_run_longer_than_interval_is_skipped_never_doubled(cluster: Cluster) -> None:
    workers = [cluster.start_worker("--poll-interval", "0.2") for _ in range(2)]
    wait_until(lambda: len(cluster.live_workers()) == 2, 30, "two workers to heartbeat")
    anchor = utc_now() + timedelta(seconds=0.5)
    cluster.add(
        "long",
        "slow",
        params={"seconds": 2, "record": str(cluster.record), "tag": "long"},
        trigger=IntervalTrigger(timedelta(seconds=1), anchor),
        next_fire_at=anchor,
    )
    wait_until(
        lambda: (
            len(cluster.records("end")) >= 2 and sum(r.status is RunStatus.skipped for r in cluster.runs("long")) >= 2
        ),
        30,
        "two finished runs and two skipped fire times",
    )
    assert cluster.cli("pause", "long").returncode == 0
    wait_until(
        lambda: all(r.status is not RunStatus.running for r in cluster.runs("long")), 15, "the last run to finish"
    )
    assert [w.stop() for w in workers] == [0, 0]

    runs = cluster.runs("long")
    keys = [r.scheduled_for for r in runs]
    assert len(keys) == len(set(keys))
    assert keys == _fire_times(anchor, timedelta(seconds=1), keys[-1]), "a fire time without a row"
    by_status = Counter(r.status for r in runs)
    assert set(by_status) == {RunStatus.succeeded, RunStatus.skipped}, by_status
    for run in runs:
        if run.status is RunStatus.skipped:  # or claimed ahead when the pause came: not started
            assert run.error in (
                "the previous run was still going, or waiting to retry (overlap: skip)",
                "not started: the schedule was paused before its fire time",
            )
    starts = Counter(r["scheduled_for"] for r in cluster.records("start"))
    assert max(starts.values()) == 1, "one fire time started twice"
    assert {_key("long", at) for at in starts} == {
        _key(r.schedule_name, r.scheduled_for) for r in runs if r.status is RunStatus.succeeded
    }
    executions = sorted(
        (s["at"], e["at"])
        for s in cluster.records("start")
        for e in cluster.records("end")
        if s["scheduled_for"] == e["scheduled_for"]
    )
    for (_, end), (start, _) in itertools.pairwise(executions):
        assert start >= end, "two runs of one skip-overlap schedule overlapped"


# -- 4. downtime with a daily schedule: catch-up policies --------------------------------------


def test_three_days_down_daily_catchup_latest_none_all(cluster: Cluster) -> None:
    now = utc_now()
    soon = now + timedelta(hours=2)
    trigger = DailyTrigger(soon.hour, soon.minute)
    # the last three fire times passed while no worker ran: the worker was down for 3 days
    upcoming = next_fire_time(trigger, UTC, now).utc
    missed_three = [upcoming - timedelta(days=d) for d in (3, 2, 1)]
    assert missed_three[0] < now - timedelta(days=2, hours=21)
    for policy in CatchUp:
        name = f"daily-{policy.value}"
        cluster.add(
            name,
            "ok_with_scheduled_for",
            params={"record": str(cluster.record), "tag": name},
            policy=Policy(catchup=policy),
            trigger=trigger,
            next_fire_at=missed_three[0],
        )
    result = cluster.cli("run-worker", "--once", "--state-dir", str(cluster.state_dir))
    assert result.returncode == 0, result.stderr

    expected = {
        "latest": ["missed", "missed", "succeeded"],
        "none": ["missed", "missed", "missed"],
        "all": ["succeeded", "succeeded", "succeeded"],
    }
    for policy, statuses in expected.items():
        name = f"daily-{policy}"
        rows = sorted(cluster.history_json(name), key=lambda r: r["scheduled_for"])
        assert [_key(name, r["scheduled_for"]) for r in rows] == [_key(name, at) for at in missed_three]
        assert [r["status"] for r in rows] == statuses, (name, rows)
        for row in rows:
            if row["status"] == "missed":
                assert row["error"].startswith("missed: no worker claimed it within"), row["error"]
        ran = sorted(_key(name, r["scheduled_for"]) for r in cluster.records("ok", name))
        assert ran == [_key(name, r["scheduled_for"]) for r in rows if r["status"] == "succeeded"]
        assert cluster.store.get(name).next_fire_at == upcoming


# -- 5. pause and resume from the CLI ----------------------------------------------------------


def test_pause_stops_within_one_poll_and_resume_skips_the_paused_period(cluster: Cluster) -> None:
    poll = 0.5
    worker = cluster.start_worker("--in-process", "--poll-interval", str(poll))
    anchor = utc_now() + timedelta(seconds=0.5)
    cluster.add(
        "ticker",
        "ok_with_scheduled_for",
        params={"record": str(cluster.record), "tag": "ticker"},
        trigger=IntervalTrigger(timedelta(seconds=1), anchor),
        next_fire_at=anchor,
    )
    wait_until(
        lambda: sum(r.status is RunStatus.succeeded for r in cluster.runs("ticker")) >= 2, 30, "two runs of ticker"
    )
    result = cluster.cli("pause", "ticker", "--note", "testing")
    paused_at = utc_now()
    assert result.returncode == 0, result.stderr
    assert cluster.store.get("ticker").next_fire_at is None

    # watch the paused period: no new claim after pause returned + one poll
    watch_until = time.monotonic() + 2.5
    limit = paused_at + timedelta(seconds=poll)
    while time.monotonic() < watch_until:
        late = [r for r in cluster.runs("ticker") if r.started_at is not None and r.started_at > limit]
        assert not late, f"claimed after the pause: {late}"
        time.sleep(0.1)
    before_resume = utc_now()
    result = cluster.cli("resume", "ticker")
    assert result.returncode == 0, result.stderr
    wait_until(
        lambda: any(r.scheduled_for > before_resume for r in cluster.runs("ticker")), 15, "a run after the resume"
    )
    assert worker.stop() == 0

    runs = cluster.runs("ticker")
    during = [r for r in runs if limit < r.scheduled_for < before_resume]
    assert not during, f"fire times of the paused period were recorded: {during}"
    # a fire time claimed ahead when the pause came did not start (its fenced start refused it)
    for run in runs:
        assert run.status is RunStatus.succeeded or (
            run.status is RunStatus.skipped
            and run.error == "not started: the schedule was paused before its fire time"
            and run.scheduled_for <= limit
        ), run
    assert len(cluster.records("ok")) == sum(r.status is RunStatus.succeeded for r in runs)


def test_an_idle_worker_wakes_on_a_write_to_the_store_not_on_a_poll(cluster: Cluster) -> None:
    # an hour between polls and 20 minutes between heartbeats: only the change watch's wake-up
    # (inotify on the SQLite files, LISTEN on PostgreSQL) lets it see a schedule added while it sleeps
    worker = cluster.start_worker("--in-process", "--poll-interval", "3600", "--lease", "3600")
    for name in ("first", "second"):  # "second" is added once the worker is surely asleep again
        due = utc_now() + timedelta(seconds=1)
        cluster.add(
            name,
            "ok_with_scheduled_for",
            params={"record": str(cluster.record), "tag": name},
            trigger=IntervalTrigger(timedelta(hours=1), due),
            next_fire_at=due,
        )
        run = wait_until(
            lambda name=name: next((r for r in cluster.runs(name) if r.status is RunStatus.succeeded), None),
            30,
            f"the run of {name}, added while the worker slept",
        )
        assert run.scheduled_for == due and run.started_at >= due
    assert worker.stop() == 0
    assert len(cluster.records("ok")) == 2


# -- 6. pipelines that fail in every way ------------------------------------------------------


def test_failing_pipelines_are_recorded_and_the_worker_keeps_serving(cluster: Cluster) -> None:
    record = str(cluster.record)
    cluster.add("raises", "raises", params={"message": "boom-7f3a"})
    cluster.add("hard-exit", "hard_exit", params={"code": 3})
    cluster.add("sys-exit", "exits", params={"code": 3})
    cluster.add("hangs", "hang", params={"record": record}, policy=Policy(timeout=timedelta(seconds=1)))
    cluster.add("prints", "prints_100mb")
    worker = cluster.start_worker("--lease", "3", "--poll-interval", "0.2", "--max-concurrent", "8")
    names = ("raises", "hard-exit", "sys-exit", "hangs", "prints")
    final = wait_until(
        lambda: (
            (rows := {r.schedule_name: r for r in cluster.runs()})
            and all(n in rows and rows[n].status is not RunStatus.running for n in names)
            and rows
        ),
        60,
        "all five runs to end",
    )

    assert final["raises"].status is RunStatus.failed
    assert final["raises"].error is not None and final["raises"].error.startswith("RuntimeError: boom-7f3a")
    assert final["hard-exit"].status is RunStatus.failed
    assert final["hard-exit"].error == "the run's process exited with status 3 before reporting a result"
    assert final["sys-exit"].status is RunStatus.failed
    assert final["sys-exit"].error == "the pipeline called sys.exit(3)"
    assert final["hangs"].status is RunStatus.timed_out
    assert final["hangs"].error == "timed out after 1 s"
    assert final["hangs"].duration_seconds is not None and 1.0 <= final["hangs"].duration_seconds < 10
    hung = cluster.records("hang")
    assert len(hung) == 1 and process_gone(hung[0]["pid"])
    printed = final["prints"]
    assert printed.status is RunStatus.succeeded, printed.error
    assert printed.log_path is not None
    log = Path(printed.log_path)
    size = log.stat().st_size
    assert DEFAULT_MAX_LOG_BYTES < size <= DEFAULT_MAX_LOG_BYTES + 200, size
    with open(log, "rb") as handle:
        handle.seek(DEFAULT_MAX_LOG_BYTES)
        note = handle.read().decode()
    dropped = 100 * 1024 * 1024 - DEFAULT_MAX_LOG_BYTES
    assert (
        note == f"\n[flowyml-sched: {dropped} more bytes of output dropped at the {DEFAULT_MAX_LOG_BYTES}-byte limit]\n"
    )

    # the worker is unaffected: alive, heartbeat fresh, still claiming, and it stops cleanly
    assert worker.alive()
    cluster.add("after", "ok", params={"record": record, "tag": "after"})
    wait_until(lambda: cluster.records("ok", "after"), 30, "a run after the failures")
    wait_until(lambda: [r.status for r in cluster.runs("after")] == [RunStatus.succeeded], 10, "the run to be recorded")
    health = cluster.cli("health", "--json")
    assert health.returncode == 0, health.stdout + health.stderr
    report = json.loads(health.stdout)
    (mine,) = [w for w in report["workers"] if w["pid"] == worker.pid]
    assert utc_now() - datetime.fromisoformat(mine["heartbeat_at"]) < timedelta(seconds=3)
    assert worker.stop() == 0


# -- 7. SIGTERM during runs --------------------------------------------------------------------


def test_sigterm_drains_within_grace_then_interrupts_the_rest(cluster: Cluster) -> None:
    record = str(cluster.record)
    grace, lease = 5.0, 2.0
    # "short" outlives the lease while the worker drains: the draining worker must keep
    # heartbeating, or the bystander would declare its runs abandoned
    cluster.add("short", "slow", params={"seconds": 3, "record": record, "tag": "short"})
    cluster.add("long", "slow", params={"seconds": 120, "record": record, "tag": "long"})
    worker = cluster.start_worker("--grace", str(grace), "--lease", str(lease), "--poll-interval", "0.2")
    starts = wait_until(
        lambda: (found := cluster.records("start")) and len(found) == 2 and {r["tag"]: r for r in found},
        30,
        "both runs to start",
    )
    bystander = cluster.start_worker("--lease", str(lease), "--poll-interval", "0.2")
    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(grace + 15) == 0
    took = time.monotonic() - signalled
    assert grace <= took < grace + 10, took

    rows = {r.schedule_name: r for r in cluster.runs()}
    assert rows["short"].status is RunStatus.succeeded, rows["short"]  # drained: it ended within the grace
    assert rows["short"].attempt == 1
    assert [r["tag"] for r in cluster.records("end")] == ["short"]
    assert rows["long"].status is RunStatus.interrupted, rows["long"]
    assert rows["long"].error == f"worker shut down: the {grace:g} s grace period ran out"
    assert process_gone(starts["long"]["pid"])
    assert not [r for r in cluster.runs() if r.status is RunStatus.running], "a run row left open"
    assert bystander.stop() == 0
    assert "lost their lease" not in bystander.log()
    assert {w.pid: w.status for w in cluster.store.list_workers()} == {worker.pid: "stopped", bystander.pid: "stopped"}


def test_once_waits_for_a_run_longer_than_grace_and_keeps_its_lease(cluster: Cluster) -> None:
    cluster.add("slow-once", "slow", params={"seconds": 4, "record": str(cluster.record), "tag": "slow-once"})
    once = cluster.start_worker("--once", "--grace", "1", "--lease", "2", "--poll-interval", "0.2")
    wait_until(lambda: cluster.records("start"), 30, "the run to start")
    bystander = cluster.start_worker("--lease", "2", "--poll-interval", "0.2")
    assert once.wait(30) == 0
    assert [(r.status, r.attempt) for r in cluster.runs()] == [(RunStatus.succeeded, 1)]
    assert len(cluster.records("end")) == 1
    assert bystander.stop() == 0
    assert "lost their lease" not in bystander.log()


def test_second_sigterm_stops_everything_at_once(cluster: Cluster) -> None:
    cluster.add("long", "slow", params={"seconds": 120, "record": str(cluster.record), "tag": "long"})
    worker = cluster.start_worker("--grace", "60", "--poll-interval", "0.2")
    (started,) = wait_until(lambda: cluster.records("start"), 30, "the run to start")
    worker.signal(signal.SIGTERM)
    wait_until(lambda: "stopping: no more claims" in worker.log(), 10, "the worker to start draining")
    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    assert time.monotonic() - signalled < 5
    (row,) = cluster.runs()
    assert (row.status, row.error) == (RunStatus.interrupted, "worker stopped at once (second signal)")
    assert process_gone(started["pid"])
