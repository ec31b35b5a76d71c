"""Workers with Redis locks, as processes: a Redis outage (nothing runs unguarded, the fire
time is skipped within its misfire grace, said once, reported by ``health``, recovered from by
itself), a Redis restart while runs go on (nothing lost, nothing run twice, a lock lost noted
on its run), and the Python API's Redis mode with a SQLite store in each process (each fire
time runs once across them). Each test has a Redis server of its own (:mod:`servers`); the
several-hosts tests are in ``test_several_hosts.py``."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from servers import OwnRedis, own_redis
from test_worker_processes import Cluster, utc_now, wait_until

from flowyml_sched.model import Overlap, Policy, RunStatus
from flowyml_sched.store import open_store
from flowyml_sched.triggers import IntervalTrigger
from flowyml_sched.worker.execution import ANOTHER_STORE_RAN_IT, LOCK_BACKEND_UNREACHABLE

LOST_NOTE = "expired while its run went on"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[OwnRedis]:
    with own_redis() as server:
        yield server


@pytest.fixture
def cluster(postgresql_url: str, tmp_path: Path) -> Iterator[Cluster]:
    opened = Cluster(postgresql_url, tmp_path)
    try:
        yield opened
    finally:
        opened.close()


def _redis_worker(cluster: Cluster, redis: OwnRedis, state: str) -> list[str]:
    """Options of a worker with Redis locks and a state directory of its own (another host's)."""
    return [
        "--lock-backend", "redis", "--redis-url", redis.url, "--state-dir", str(cluster.root / state),
        "--lease", "3", "--poll-interval", "0.2",
    ]  # fmt: skip


def _health(cluster: Cluster) -> dict:
    result = cluster.cli("health", "--json")
    return json.loads(result.stdout)


def test_a_redis_outage_skips_fire_times_within_their_grace_says_so_once_and_heals(
    cluster: Cluster, redis_server: OwnRedis
) -> None:
    redis_server.stop()
    worker = cluster.start_worker(*_redis_worker(cluster, redis_server, "host-a"))
    anchor = utc_now() + timedelta(seconds=0.5)
    cluster.add(
        "etl",
        "slow",
        params={"seconds": 0.1, "record": str(cluster.record), "tag": "etl"},
        policy=Policy(misfire_grace=timedelta(seconds=1)),
        trigger=IntervalTrigger(timedelta(seconds=1), anchor),
        next_fire_at=anchor,
    )

    def skipped() -> list:
        return [r for r in cluster.runs("etl") if r.status is RunStatus.skipped]

    wait_until(lambda: len(skipped()) >= 2, 60, "two fire times skipped while Redis is down")
    for run in skipped():
        assert run.error is not None and run.error.startswith(f"{LOCK_BACKEND_UNREACHABLE} (redis://"), run.error
        assert run.started_at is None
    assert cluster.records("start") == [], "a run started without its lock"
    report = wait_until(
        lambda: (h := _health(cluster))["workers"] and h["workers"][0]["lock_problem"] and h, 30, "health to say it"
    )
    assert report["status"] == "degraded"
    assert report["workers"][0]["lock_backend"] == "redis"
    assert "unreachable" in report["workers"][0]["lock_problem"]
    assert any("unreachable" in warning for warning in report["lock_warnings"])
    assert worker.log().count("ERROR flowyml_sched.locks") == 1, worker.log_tail()  # once per outage

    redis_server.start()
    back = time.time()
    wait_until(lambda: cluster.records("end"), 60, "a run once Redis is back")
    assert all(r["at"] >= back for r in cluster.records("start"))
    wait_until(lambda: not _health(cluster)["workers"][0]["lock_problem"], 30, "health to see it back")
    assert "answers again" in worker.log()
    assert worker.stop() == 0


def test_a_redis_restart_mid_run_loses_no_fire_time_and_runs_none_twice(
    cluster: Cluster, redis_server: OwnRedis
) -> None:
    workers = [cluster.start_worker(*_redis_worker(cluster, redis_server, f"host-{i}")) for i in range(2)]
    wait_until(lambda: len(cluster.live_workers()) == 2, 30, "two workers to heartbeat")
    anchor = utc_now() + timedelta(seconds=0.5)
    cluster.add(
        "long",
        "slow",
        params={"seconds": 2.5, "record": str(cluster.record), "tag": "long"},
        policy=Policy(overlap=Overlap.skip),
        trigger=IntervalTrigger(timedelta(seconds=1), anchor),
        next_fire_at=anchor,
    )
    wait_until(lambda: len(cluster.records("end")) >= 1 and cluster.records("start")[-1:], 30, "a run going")
    running = lambda: len(cluster.records("start")) > len(cluster.records("end"))  # noqa: E731
    wait_until(running, 30, "a run going")
    redis_server.restart()  # empty again: the running run's lock is gone
    restarted = time.time()
    wait_until(
        lambda: sum(r["at"] > restarted + 1 for r in cluster.records("end")) >= 2, 60, "two runs after the restart"
    )
    assert cluster.cli("pause", "long").returncode == 0
    wait_until(lambda: all(r.status is not RunStatus.running for r in cluster.runs("long")), 30, "the last run")
    assert [w.stop() for w in workers] == [0, 0]

    runs = cluster.runs("long")
    keys = [r.scheduled_for for r in runs]
    assert len(keys) == len(set(keys)), "a fire time with two rows"
    every = timedelta(seconds=1)
    assert keys == [anchor + every * k for k in range(len(keys))], "a fire time without a row"
    starts = Counter(r["scheduled_for"] for r in cluster.records("start"))
    assert max(starts.values()) == 1, "one fire time started twice"
    assert {r.status for r in runs} <= {RunStatus.succeeded, RunStatus.skipped}
    by_time = {r.scheduled_for.isoformat(): r for r in runs}
    executions = sorted(
        (s["at"], e["at"], s["scheduled_for"])
        for s in cluster.records("start")
        for e in cluster.records("end")
        if s["scheduled_for"] == e["scheduled_for"]
    )
    going = [at for start, end, at in executions if start < restarted < end]
    assert going, "no run was going when Redis restarted"
    for at in going:  # its lock went with the restart: noted on its run at its end at the latest
        assert LOST_NOTE in (by_time[at].error or ""), by_time[at]
    for (_, end, first), (start, _, _second) in itertools.pairwise(executions):
        if start < end:  # an overlap: only across the restart, and said on the run that lost its lock
            assert start > restarted - 3, "two runs overlapped although Redis kept their lock"
            assert LOST_NOTE in (by_time[first].error or ""), by_time[first]


SEED_PROCESS = textwrap.dedent(
    """
    import json, os, signal, sys, threading
    from flowyml_sched import PipelineScheduler, SchedulerConfig

    db, redis_url, record, name = sys.argv[1:]

    def job():
        with open(record, "a") as out:
            out.write(json.dumps({"pid": os.getpid()}) + "\\n")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    scheduler = PipelineScheduler(
        SchedulerConfig(db_path=db, distributed=True, lock_backend="redis", redis_url=redis_url)
    )
    scheduler.schedule_interval(name, job, seconds=1)
    scheduler.start()
    print("serving", flush=True)
    stop.wait()
    scheduler.stop()
    """
)


def test_the_python_api_redis_mode_runs_each_fire_time_once_across_processes_with_a_store_each(
    tmp_path: Path, redis_server: OwnRedis
) -> None:
    """The page's deployment: the same code on three servers, each with its own SQLite file."""
    record = tmp_path / "calls.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWYML_SCHEDULER_")}
    dbs = [tmp_path / f"server-{i}.db" for i in range(3)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SEED_PROCESS, str(db), redis_server.url, str(record), "report"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for db in dbs
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "serving", process.stdout.read()
        all_serving = utc_now()

        def succeeded() -> int:
            return sum(1 for line in record.read_text().splitlines()) if record.exists() else 0

        wait_until(lambda: succeeded() >= 4, 60, "four fire times run")
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=60)[0] for process in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs

    rows: dict = {}
    for db in dbs:
        with open_store(f"sqlite:///{db}") as store:
            for run in store.runs_since(all_serving - timedelta(hours=1)):
                rows.setdefault(run.scheduled_for, []).append(run)
    ran = {at: [r for r in found if r.status is RunStatus.succeeded] for at, found in rows.items()}
    assert all(len(done) <= 1 for done in ran.values()), "a fire time ran on two servers"
    assert sum(len(done) for done in ran.values()) == succeeded()
    pids = Counter(json.loads(line)["pid"] for line in record.read_text().splitlines())
    assert sum(pids.values()) == succeeded()
    for at, found in rows.items():
        if at > all_serving + timedelta(seconds=1) and len(found) == 3:  # every server had it: one ran it
            assert len(ran[at]) == 1, found
            for run in found:
                if run.status is RunStatus.skipped:
                    assert run.error == ANOTHER_STORE_RAN_IT
    assert sum(1 for at, found in rows.items() if len(found) == 3 and len(ran[at]) == 1) >= 2


def test_a_redis_turned_read_only_mid_run_keeps_the_run_s_outcome_and_skips_what_needs_a_lock(
    cluster: Cluster, redis_server: OwnRedis
) -> None:
    """A failover's old primary (a read-only replica) refuses writes: the run going on ends as
    its pipeline did, the fire times due meanwhile are skipped, and the worker heals with it."""
    worker = cluster.start_worker(*_redis_worker(cluster, redis_server, "host-a"))
    anchor = utc_now() + timedelta(seconds=0.5)
    cluster.add(
        "etl",
        "slow",
        params={"seconds": 2.0, "record": str(cluster.record), "tag": "etl"},
        policy=Policy(misfire_grace=timedelta(seconds=1)),
        trigger=IntervalTrigger(timedelta(seconds=1), anchor),
        next_fire_at=anchor,
    )
    wait_until(lambda: cluster.records("start"), 30, "a run going")
    admin = redis.Redis.from_url(redis_server.url)
    admin.replicaof("127.0.0.1", "1")  # nothing listens there: it stays a read-only replica
    refused = lambda: [r for r in cluster.runs("etl") if (r.error or "").startswith(LOCK_BACKEND_UNREACHABLE)]  # noqa: E731
    wait_until(lambda: len(refused()) >= 2, 60, "fire times skipped while Redis refuses writes")
    first = cluster.records("start")[0]["scheduled_for"]
    going = next(r for r in cluster.runs("etl") if r.scheduled_for.isoformat() == first)
    ended = wait_until(
        lambda: (row := cluster.store.run(going.id)) is not None and row.status is not RunStatus.running and row,
        30,
        "its end",
    )
    assert ended.status is RunStatus.succeeded, ended
    assert "read only replica" in refused()[0].error
    admin.replicaof("NO", "ONE")
    healed = time.time()
    wait_until(lambda: any(r["at"] > healed for r in cluster.records("end")), 60, "a run once Redis takes writes")
    assert "Traceback" not in worker.log(), worker.log_tail()
    assert worker.stop() == 0


def test_schedules_that_need_no_lock_run_on_time_while_redis_is_down(cluster: Cluster, redis_server: OwnRedis) -> None:
    """Runs waiting for an unreachable Redis give their run slot back (``--max-concurrent 1``);
    a worker without Redis claims 2 s after the instant."""
    redis_server.stop()
    cluster.start_worker(*_redis_worker(cluster, redis_server, "host-a"), "--max-concurrent", "1")
    anchor = utc_now() + timedelta(seconds=0.5)
    for name, overlap in (("locked", Overlap.skip), ("free", Overlap.allow)):
        cluster.add(
            name,
            "slow",
            params={"seconds": 0.05, "record": str(cluster.record), "tag": name},
            policy=Policy(overlap=overlap, misfire_grace=timedelta(seconds=10)),
            trigger=IntervalTrigger(timedelta(seconds=1), anchor),
            next_fire_at=anchor,
        )
    wait_until(lambda: len(cluster.records("end", tag="free")) >= 4, 60, "four runs of the schedule needing no lock")
    free = [r for r in cluster.runs("free") if r.started_at is not None and r.status is not RunStatus.running]
    assert len(free) >= 3 and all(r.status is RunStatus.succeeded for r in free), free
    late = sorted((r.started_at - r.scheduled_for).total_seconds() for r in free)
    # claimed 2 s late (workers that can lock would claim first); with the slot held by the
    # run waiting for Redis, each would wait out locked's catch-up (10 s of grace a fire time)
    assert late[len(late) // 2] < 5.0, late
    assert cluster.records("start", tag="locked") == []


def test_a_worker_refused_for_good_by_redis_does_not_start(cluster: Cluster, redis_server: OwnRedis) -> None:
    admin = redis.Redis.from_url(redis_server.url)
    admin.config_set("requirepass", "s3cret-pass")
    url = redis_server.url.replace("redis://", "redis://:wrong-pass@")
    options = ["--lock-backend", "redis", "--redis-url", url, "--state-dir", str(cluster.root / "host-a")]
    result = cluster.cli("run-worker", *options, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "redis_url" in result.stderr and "refused the command" in result.stderr, result.stderr
    assert "wrong-pass" not in result.stderr and "Traceback" not in result.stderr


def test_a_worker_cut_off_from_redis_leaves_the_fire_times_to_a_worker_that_can_lock(
    cluster: Cluster, redis_server: OwnRedis
) -> None:
    """It claims only what is still unclaimed 2 s after its instant: nothing, while another
    worker of the store reaches Redis."""
    healthy = cluster.start_worker(*_redis_worker(cluster, redis_server, "host-a"))
    with own_redis() as elsewhere:
        cut_off_url = elsewhere.url
    cut_off = cluster.start_worker(
        "--lock-backend", "redis", "--redis-url", cut_off_url, "--state-dir", str(cluster.root / "host-b"),
        "--lease", "3", "--poll-interval", "0.2",
    )  # fmt: skip
    wait_until(lambda: len(cluster.live_workers()) == 2, 30, "both workers to heartbeat")
    anchor = utc_now() + timedelta(seconds=0.5)
    cluster.add(
        "etl",
        "slow",
        params={"seconds": 0.05, "record": str(cluster.record), "tag": "etl"},
        trigger=IntervalTrigger(timedelta(seconds=1), anchor),
        next_fire_at=anchor,
    )
    wait_until(lambda: len(cluster.records("end")) >= 5, 60, "five runs")
    runs = [r for r in cluster.runs("etl") if r.status is not RunStatus.running]
    assert {r.status for r in runs} == {RunStatus.succeeded}, runs
    assert {r.worker.split(":")[1] for r in runs if r.worker} == {str(healthy.pid)}
    assert "with redis locks" in cut_off.log() and "is unreachable" in cut_off.log()
