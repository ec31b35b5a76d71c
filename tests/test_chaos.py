"""Chaos, with real processes: workers killed with SIGKILL, stalled with SIGSTOP past their
lease, and (on PostgreSQL) their store stopped and started again under them, in a loop.

The four schedules of issue 11's reproduction fire every second (retries 0 and 1, overlap
``skip`` and ``allow``, ``catchup: all``) from a backlog of :data:`BACKLOG` fire times, on
:data:`WORKERS` workers with ``--lease`` :data:`LEASE`. Their pipeline
(``pipelines_for_tests:attempt_recorder``, in a child process of its worker) appends a
``start`` and an ``end`` line to a record file with the fire time, the attempt and the worker,
one ``O_APPEND`` write each. The checks are made from that file, from what the test saw of the
store while the chaos went on, and from the store once every worker has stopped cleanly
(SIGTERM, then its exit):

- no attempt (schedule, fire time, attempt) started twice;
- no attempt started by a worker after it was taken from that worker (after the test saw its
  row ``abandoned`` at that attempt while that worker owned it), nor by any worker once the
  row was at a later attempt or a later attempt had started (an attempt that never started
  is handed over as it is: another worker may start it);
- no row ``running`` once the workers have stopped;
- every fire time of the window has a row (any final status counts);
- every abandoned attempt of a schedule with retries left was retried: a later attempt of that
  fire time started; and every attempt abandoned before it started was started elsewhere (or
  a later one was);
- every ``succeeded`` row's attempt started and ended in the record file.

Nothing is faked: the stall is a real SIGSTOP held until another worker has declared the
stalled one dead (a state waited for, not a guessed time), the outage a real ``pg_ctl stop``
of a PostgreSQL instance of the test's own (initdb in a temporary directory, on a free port;
the shared server on 5432 is never touched). The test waits for states with deadlines; the
fixed waits are the point of the test (how long the chaos goes on, how long the store stays
down). No check counts anything that depends on the machine's speed beyond "at least one".
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import servers
import sqlalchemy as sa
from servers import OwnPostgres
from test_worker_processes import Cluster, WorkerProcess, process_gone, utc_now, wait_until

from flowyml_sched.errors import StoreError
from flowyml_sched.model import CatchUp, Overlap, Policy, Run
from flowyml_sched.store import ScheduleStore, open_store
from flowyml_sched.triggers import IntervalTrigger

pytestmark = pytest.mark.slow

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

WORKERS = 3
LEASE = 3.0
"""``--lease`` of every worker: a stall is held until another worker has declared it dead."""
CLAIM_AHEAD = 1.0
"""``--claim-ahead``: every schedule always has a run claimed and waiting for its instant, so a
stall, a kill or an outage always finds runs claimed but not started."""
BACKLOG = 6
"""Fire times (one a second) already due when the schedules are stored: caught up one after
the other, as in the issue's reproduction."""
RUN_SECONDS = 0.3
CHAOS_SECONDS = 14.0
"""How long kills, stalls and outages go on; the event under way when it ends is finished."""
OUTAGE_SECONDS = 1.0
"""How long the test's own PostgreSQL stays stopped each time."""
SETTLE_TIMEOUT = 15.0
"""After the chaos, how long the workers get to account for every fire time of the window
(reap the last killed worker's runs, retry them) before they are stopped and the checks run."""
STATE_TIMEOUT = 30.0
"""Deadline of the waits for a state (a worker declared dead, a pipeline started)."""
SCHEDULES = {
    f"r{retries}-{overlap.value}": Policy(
        catchup=CatchUp.all, overlap=overlap, retries=retries, retry_backoff=timedelta(0)
    )
    for retries in (0, 1)
    for overlap in (Overlap.skip, Overlap.allow)
}
KNOWN_FINAL = {"succeeded", "failed", "timed_out", "interrupted", "skipped", "missed", "abandoned"}
"""Row statuses that are final today; any other one (a retry waiting for its time, say) is
waited for while the workers settle, and counts as a row at the end."""

Attempt = tuple[str, datetime, int]
"""(schedule, fire time, attempt)."""


# -- a PostgreSQL instance of the test's own (tests/servers.py) ------------------------------


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL instance of this test's own, stopped and removed afterwards."""
    with servers.own_postgres() as server:
        yield server


@pytest.fixture(params=("sqlite", "postgresql"))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Cluster, OwnPostgres | None]]:
    """A :class:`Cluster` on a SQLite file, or on the test's own PostgreSQL (given too)."""
    server = request.getfixturevalue("own_postgres") if request.param == "postgresql" else None
    url = server.url if server is not None else request.getfixturevalue("sqlite_url")
    cluster = Cluster(url, tmp_path)
    try:
        yield cluster, server
    finally:
        cluster.close()  # before the server stops (fixtures end in reverse order)


# -- what the test sees of the store while the chaos goes on ---------------------------------


class Ledger:
    """What the test saw of the run rows while the chaos went on: each attempt seen
    ``abandoned`` (and whether it had started), the highest attempt seen of each fire time,
    when each attempt was first seen taken from the worker that owned it (its row
    ``abandoned`` at that attempt, owned by that worker's id), and when each attempt was first
    seen superseded (its row at a later attempt). Times are ``time.time()`` once the read
    returned: the change had committed by then."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.taken: dict[tuple[str, datetime, int, str], float] = {}
        self.superseded: dict[Attempt, float] = {}
        self.abandoned: dict[Attempt, bool] = {}
        self.highest: Counter[tuple[str, datetime]] = Counter()

    def observe(self, store: ScheduleStore) -> None:
        rows = store.runs_since(EPOCH)
        seen = time.time()
        with self._lock:
            for row in rows:
                fire = (row.schedule_name, row.scheduled_for)
                self.highest[fire] = max(self.highest[fire], row.attempt)
                if row.status.value == "abandoned":
                    key = (*fire, row.attempt)  # started: at any time it was seen abandoned
                    self.abandoned[key] = self.abandoned.get(key, False) or row.started_at is not None
                    self.taken.setdefault((*fire, row.attempt, row.worker or ""), seen)
                for earlier in range(1, row.attempt):
                    self.superseded.setdefault((*fire, earlier), seen)


def _watch(url: str, ledger: Ledger, stop: threading.Event) -> None:
    """The test's watcher thread: observe the store every 0.2 s (through an outage too)."""
    store = open_store(url, create=False)
    try:
        while not stop.wait(0.2):
            with contextlib.suppress(StoreError):
                ledger.observe(store)
    finally:
        store.close()


# -- the chaos ---------------------------------------------------------------------------------


class Chaos:
    """The workers of a cluster and what is done to them. Every event is logged (printed: pytest
    shows it when the test fails)."""

    def __init__(self, cluster: Cluster, server: OwnPostgres | None, ledger: Ledger):
        self.cluster = cluster
        self.server = server
        self.ledger = ledger
        self.workers: list[WorkerProcess] = []
        self.killed: set[int] = set()
        self.stalled: int | None = None
        self.stalls = 0
        """Stalls that lasted until another worker declared the stopped one dead."""
        self.began = time.monotonic()

    def log(self, text: str) -> None:
        print(f"{time.monotonic() - self.began:6.2f} s  {text}")

    def start_worker(self) -> WorkerProcess:
        worker = self.cluster.start_worker(
            "--lease", str(LEASE), "--claim-ahead", str(CLAIM_AHEAD), "--poll-interval", "0.2", "--grace", "10"
        )
        self.workers.append(worker)
        self.log(f"started worker {worker.pid}")
        return worker

    def replace_exited(self) -> None:
        """A worker that ended on its own (none should) is logged and replaced: the chaos goes on
        with :data:`WORKERS` of them."""
        for worker in [w for w in self.workers if not w.alive()]:
            self.workers.remove(worker)
            if worker.pid not in self.killed:
                self.log(f"worker {worker.pid} exited on its own ({worker.popen.returncode}):\n{worker.log_tail(10)}")
            self.start_worker()

    def all_serving(self) -> None:
        """Wait until every worker of the cluster has heartbeated (a new one has started up)."""

        def serving() -> bool:
            with contextlib.suppress(StoreError):
                alive = {w.pid for w in self.cluster.store.list_workers() if w.status == "alive"}
                return {w.pid for w in self.workers} <= alive
            return False

        wait_until(serving, STATE_TIMEOUT, "every worker to heartbeat")

    def starts(self) -> list[dict[str, Any]]:
        return self.cluster.records("start")

    def running_pipelines(self) -> Counter[int]:
        """Workers (pid) with a pipeline started and not ended whose process is alive."""
        ended = {r["pid"] for r in self.cluster.records("end")}
        return Counter(r["worker_pid"] for r in self.starts() if r["pid"] not in ended and not process_gone(r["pid"]))

    def progress_after(self, since: float, what: str) -> None:
        """Wait until some pipeline starts after ``since`` (``time.time()``)."""
        wait_until(
            lambda: any(r["at"] > since for r in self.starts()), STATE_TIMEOUT, f"a pipeline to start after {what}"
        )

    def busy_worker(self) -> WorkerProcess:
        """A live worker with a pipeline running (waited for), the one with the most of them;
        not the last one stalled while another is busy (it is left to show what it does next)."""
        mine = {w.pid: w for w in self.workers if w.alive() and w.pid != self.stalled}
        if not mine:
            mine = {w.pid: w for w in self.workers if w.alive()}
        busy = wait_until(
            lambda: [(n, pid) for pid, n in self.running_pipelines().items() if pid in mine],
            STATE_TIMEOUT,
            "a worker with a pipeline running",
        )
        return mine[max(busy)[1]]

    def kill(self) -> None:
        """SIGKILL a worker while a pipeline of its runs, then start one in its place."""
        victim = self.busy_worker()
        self.killed.add(victim.pid)
        victim.signal(signal.SIGKILL)
        victim.wait(10)
        self.log(f"killed worker {victim.pid}")
        self.replace_exited()
        self.progress_after(time.time(), f"killing {victim.pid}")

    def stall(self) -> bool:
        """SIGSTOP a worker while a pipeline of its runs, until another worker has declared it
        dead (its lease ran out), then SIGCONT. False when the other workers could not write
        meanwhile (no heartbeat for longer than a lease): the worker was stopped inside a
        transaction, holding SQLite's write lock or a row the others wait for, and nobody can
        declare it dead; it is continued then."""
        victim = self.busy_worker()
        victim.signal(signal.SIGSTOP)
        stopped = utc_now()
        self.log(f"stopped worker {victim.pid}")

        def outcome() -> str | None:
            with contextlib.suppress(StoreError):
                workers = self.cluster.store.list_workers()
                if any(w.pid == victim.pid and w.status == "dead" for w in workers):
                    return "dead"
                others = [w.heartbeat_at for w in workers if w.pid != victim.pid and w.status == "alive"]
                if utc_now() - max([stopped, *others]) > timedelta(seconds=LEASE + 1):
                    return "held"
            return None

        found = wait_until(outcome, 3 * LEASE + 20, f"another worker to declare the stopped worker {victim.pid} dead")
        if found == "dead":
            self.ledger.observe(self.cluster.store)  # what was taken from it is on record before it runs again
            self.stalled = victim.pid
            self.stalls += 1
        continued = utc_now()
        victim.signal(signal.SIGCONT)
        self.log(
            f"declared dead; continued worker {victim.pid}"
            if found == "dead"
            else f"no other worker could write for {LEASE + 1:g} s; continued worker {victim.pid}"
        )

        def back() -> bool:  # it found out (its next heartbeat), or it ended
            with contextlib.suppress(StoreError):
                workers = self.cluster.store.list_workers()
                return not victim.alive() or any(w.pid == victim.pid and w.heartbeat_at > continued for w in workers)
            return False

        wait_until(back, STATE_TIMEOUT, f"the continued worker {victim.pid} to heartbeat again or end")
        self.log(f"worker {victim.pid} is back")
        self.progress_after(time.time(), f"continuing {victim.pid}")
        return found == "dead"

    def outage(self) -> None:
        """Stop the store while a pipeline runs, keep it down :data:`OUTAGE_SECONDS`, start it."""
        assert self.server is not None
        self.busy_worker()
        self.server.stop()
        self.log("stopped PostgreSQL")
        time.sleep(OUTAGE_SECONDS)  # the outage's length is the point here
        self.server.start()
        self.log("started PostgreSQL")
        self.progress_after(time.time(), "the store came back")


def _run_until_settled(store: ScheduleStore, window_end: datetime, killed: set[int], timeout: float) -> bool:
    """Wait (at most ``timeout`` s) until the workers have accounted for every fire time up to
    ``window_end`` and for the killed workers: each schedule's next fire time is past the
    window, each row of the window is final with no retry owed (an ``abandoned`` attempt of a
    schedule with retries left), and every killed worker has been declared dead (its runs
    abandoned). False when the time ran out: the checks then say what is missing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(StoreError):
            moved = all(s.next_fire_at is not None and s.next_fire_at > window_end for s in store.list())
            rows = [r for r in store.runs_since(EPOCH) if r.scheduled_for <= window_end]
            alive = {w.pid for w in store.list_workers() if w.status == "alive"}
            if moved and not any(_unsettled(r) for r in rows) and not killed & alive:
                return True
        time.sleep(0.2)
    return False


def _unsettled(row: Run) -> bool:
    """Not final yet, or a retry (or a handed-over attempt) is still owed."""
    return row.status.value not in KNOWN_FINAL or row.retry_at is not None


# -- the checks --------------------------------------------------------------------------------


def _problems(
    starts: list[dict[str, Any]],
    ends: list[dict[str, Any]],
    rows: list[Run],
    ledger: Ledger,
    anchors: dict[str, datetime],
    window_end: datetime,
) -> list[str]:
    """Every property the test checks, as one sentence per property that does not hold (with
    how many cases and the first few)."""

    def attempt_of(record: dict[str, Any]) -> Attempt:
        return record["tag"], datetime.fromisoformat(record["scheduled_for"]).astimezone(UTC), record["attempt"]

    def show(name: str, at: datetime, attempt: int | None = None) -> str:
        return f"{name}@{at:%H:%M:%S.%f}"[:-3] + (f"#{attempt}" if attempt is not None else "")

    def some(cases: list[str]) -> str:
        return ", ".join(cases[:6]) + (", ..." if len(cases) > 6 else "")

    problems = []
    unlabelled = [r for r in starts + ends if not isinstance(r.get("attempt"), int)]
    assert not unlabelled, f"pipelines that could not tell their attempt (the log file's name): {unlabelled[:3]}"

    started = Counter(attempt_of(r) for r in starts)
    twice = [f"{show(*key)} x{n}" for key, n in sorted(started.items()) if n > 1]
    if twice:
        problems.append(f"{len(twice)} attempts started more than once: {some(twice)}")

    # an attempt must not start once taken from its worker (seen abandoned, at it or at a later
    # attempt), nor once a later attempt of its fire time has started
    first_start: dict[Attempt, float] = {}
    for record in sorted(starts, key=lambda r: r["at"]):
        first_start.setdefault(attempt_of(record), record["at"])
    late = []
    for record in sorted(starts, key=attempt_of):
        name, at, attempt = key = attempt_of(record)
        taken = [ledger.taken.get((*key, record["worker"]), float("inf")), ledger.superseded.get(key, float("inf"))]
        taken += [when for (n, a, later), when in first_start.items() if (n, a) == (name, at) and later > attempt]
        if record["at"] > min(taken):
            late.append(f"{show(*key)} by worker {record['worker']} {record['at'] - min(taken):.2f} s after")
    if late:
        problems.append(f"{len(late)} starts of attempts already taken from their worker (abandoned): {some(late)}")

    running = [f"{show(r.schedule_name, r.scheduled_for, r.attempt)}" for r in rows if r.status.value == "running"]
    if running:
        problems.append(f"{len(running)} rows still running after every worker stopped: {some(running)}")

    have = {(r.schedule_name, r.scheduled_for) for r in rows}
    missing = []
    for name, anchor in anchors.items():
        at = anchor
        while at <= window_end:
            if (name, at) not in have:
                missing.append(show(name, at))
            at += timedelta(seconds=1)
    if missing:
        problems.append(f"{len(missing)} fire times of the window without a row: {some(missing)}")

    # attempts abandoned (seen so, or the row's last state) or superseded by a later attempt
    # (the pipeline never fails: an attempt is retried only when it was taken from its worker),
    # of schedules with retries left: a later attempt of the fire time must have started
    final = {(r.schedule_name, r.scheduled_for): r for r in rows}
    highest = Counter(ledger.highest)
    for row in rows:
        highest[(row.schedule_name, row.scheduled_for)] = max(
            highest[(row.schedule_name, row.scheduled_for)], row.attempt
        )
    abandoned = dict(ledger.abandoned)
    for r in rows:
        if r.status.value == "abandoned":
            key = (r.schedule_name, r.scheduled_for, r.attempt)
            abandoned[key] = abandoned.get(key, False) or r.started_at is not None
    for (name, at), top in highest.items():  # superseded: it had started (else it is handed over as it is)
        for a in range(1, top):
            abandoned.setdefault((name, at, a), True)
    last_started: Counter[tuple[str, datetime]] = Counter()
    for name, at, attempt in started:
        last_started[(name, at)] = max(attempt, last_started[(name, at)])
    for r in rows:  # started by the store's word (its fenced start), its worker killed before its first line
        if r.started_at is not None:
            fire = (r.schedule_name, r.scheduled_for)
            last_started[fire] = max(r.attempt, last_started[fire])
    lost = [
        f"{show(name, at, attempt)} (row: {final[(name, at)].status.value} #{final[(name, at)].attempt}: "
        f"{(final[(name, at)].error or '').splitlines()[-1:]})"
        for (name, at, attempt), had_started in sorted(abandoned.items())
        if at <= window_end
        and (
            (had_started and attempt <= SCHEDULES[name].retries and last_started[(name, at)] <= attempt)
            or (not had_started and last_started[(name, at)] < attempt)
        )
    ]
    if lost:
        problems.append(
            f"{len(lost)} abandoned attempts with retries left were not retried (no later attempt started): {some(lost)}"
        )

    ended = {attempt_of(r) for r in ends}
    unrecorded = [
        show(*key)
        for r in rows
        if r.status.value == "succeeded"
        and ((key := (r.schedule_name, r.scheduled_for, r.attempt)) not in started or key not in ended)
    ]
    if unrecorded:
        problems.append(f"{len(unrecorded)} succeeded rows whose attempt did not start and end: {some(unrecorded)}")
    return problems


# -- the test ----------------------------------------------------------------------------------


def test_workers_killed_stalled_and_cut_off_from_the_store_start_each_attempt_at_most_once_and_account_for_every_fire_time(
    backend: tuple[Cluster, OwnPostgres | None],
) -> None:
    cluster, server = backend
    began = time.monotonic()
    ledger = Ledger()
    chaos = Chaos(cluster, server, ledger)
    for _ in range(WORKERS):
        chaos.start_worker()
    chaos.all_serving()

    # the reproduction: a backlog to catch up, then one fire time a second each (the
    # four a quarter of a second apart)
    first = utc_now().replace(microsecond=0) - timedelta(seconds=BACKLOG)
    anchors = {}
    for index, (name, policy) in enumerate(SCHEDULES.items()):
        anchors[name] = first + timedelta(milliseconds=250 * index)
        cluster.add(
            name,
            "attempt_recorder",
            params={"record": str(cluster.record), "tag": name, "seconds": RUN_SECONDS},
            policy=policy,
            trigger=IntervalTrigger(timedelta(seconds=1), anchors[name]),
            next_fire_at=anchors[name],
        )
    stop_watching = threading.Event()
    watcher = threading.Thread(target=_watch, args=(cluster.url, ledger, stop_watching), daemon=True)
    watcher.start()
    try:
        # the first stall comes while the backlog is being caught up; then kills and stalls
        # (and on PostgreSQL an outage) in turn until the time is up
        events = [chaos.stall, chaos.kill, chaos.outage if server is not None else chaos.kill, chaos.kill]
        chaos_until = time.monotonic() + CHAOS_SECONDS
        step = held = 0
        while time.monotonic() < chaos_until or step < len(events):
            chaos.replace_exited()
            chaos.all_serving()
            if events[step % len(events)]() is False and held < 3:
                held += 1  # a stall that held the store: stall again
                continue
            step += 1
        window_end = utc_now()
        chaos.replace_exited()
        chaos.log("chaos over; the workers settle")
        settled = _run_until_settled(cluster.store, window_end, chaos.killed, SETTLE_TIMEOUT)
        chaos.log("settled" if settled else f"not settled within {SETTLE_TIMEOUT:g} s")
    finally:
        stop_watching.set()
        watcher.join(10)

    for worker in chaos.workers:
        worker.signal(signal.SIGTERM)
    exits = {w.pid: w.wait(30) for w in chaos.workers}
    chaos.log(f"workers stopped: {exits}")
    pipelines = {r["pid"] for r in cluster.records("start")}
    wait_until(lambda: all(process_gone(pid) for pid in pipelines), 15, "every pipeline process to end")

    starts, ends, rows = cluster.records("start"), cluster.records("end"), cluster.runs()
    dialect = cluster.store.dialect
    print(
        f"{dialect}: {len(rows)} rows {dict(Counter(r.status.value for r in rows))}, {len(starts)} starts, "
        f"{len(ledger.abandoned)} attempts seen abandoned, {len(chaos.killed)} kills, {chaos.stalls} stalls, "
        f"{time.monotonic() - began:.1f} s"
    )
    assert rows and starts  # the chaos ran pipelines: at least one
    assert chaos.stalls, "no stall lasted until the stopped worker was declared dead"
    assert ledger.taken, "no attempt was seen taken from its worker: the kills and stalls tested nothing"
    problems = _problems(starts, ends, rows, ledger, anchors, window_end)
    assert not problems, f"on {dialect}:\n" + "\n".join(problems)


def test_the_own_postgresql_answers_on_its_port_and_stops_and_starts(own_postgres: OwnPostgres) -> None:
    engine = sa.create_engine(own_postgres.url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select current_setting('port')")).scalar() == str(own_postgres.port)
        own_postgres.stop()
        with pytest.raises(sa.exc.OperationalError), engine.connect():
            pass
        own_postgres.start()
        with engine.connect() as conn:
            assert conn.execute(sa.select(1)).scalar() == 1
    finally:
        engine.dispose()
