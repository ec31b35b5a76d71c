"""Several hosts for real: workers in network namespaces of their own (their own hostname,
network and state directory), sharing a PostgreSQL and a Redis server of the test's own that
listen on the namespaces' gateways (:mod:`servers`). Overlap ``skip``, ``queue`` and
``replace`` hold across hosts with Redis locks, each fire time is claimed once, and file locks
on separate hosts are shown not to hold (what the Redis backend is for).

Each worker runs with ``--max-concurrent 1`` where the test needs the next fire time to go to
the other host: a worker whose one slot is taken by a run claims nothing, so the other host
claims the next fire time while the first one's run goes on.
"""

from __future__ import annotations

import itertools
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from servers import Host, OwnPostgres, OwnRedis, hosts, own_postgres, own_redis
from test_worker_processes import CLI, Cluster, WorkerProcess, utc_now, wait_until

from flowyml_sched.model import Overlap, Policy, Run, RunStatus
from flowyml_sched.triggers import IntervalTrigger

EVERY = timedelta(seconds=1)
RUN_SECONDS = 1.6


@dataclass
class Deployment:
    """Two hosts, the servers they share, and the test's view of the store."""

    hosts: list[Host]
    postgres: OwnPostgres
    redis: OwnRedis
    cluster: Cluster

    def start_worker(self, host: Host, *options: str, env: dict[str, str] | None = None) -> WorkerProcess:
        """``run-worker`` on ``host``, on the shared store, with a state directory of the host's own."""
        log_path = self.cluster.root / f"worker-{len(self.cluster.workers)}-{host.hostname}.log"
        argv = [
            CLI, "run-worker", "--db-url", self.postgres.url_for(host.gateway),
            "--state-dir", str(self.cluster.root / host.hostname), "--poll-interval", "0.2", "--lease", "6", *options,
        ]  # fmt: skip
        with open(log_path, "wb") as log:
            popen = host.popen(
                argv,
                env={**self.cluster.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(popen, log_path)
        self.cluster.workers.append(worker)
        return worker

    def redis_options(self, host: Host) -> list[str]:
        return ["--lock-backend", "redis", "--redis-url", self.redis.url_for(host.gateway)]


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    with hosts(2) as made:
        gateways = [host.gateway for host in made]
        with own_postgres(gateways) as postgres, own_redis(gateways) as redis:
            cluster = Cluster(postgres.url, tmp_path)
            try:
                yield Deployment(made, postgres, redis, cluster)
            finally:
                cluster.close()


def _long_schedule(deployment: Deployment, overlap: Overlap) -> datetime:
    """A schedule ``long`` every second whose run takes 2.5 s; returns its first fire time."""
    cluster = deployment.cluster
    wait_until(lambda: len(cluster.live_workers()) == 2, 60, "both hosts' workers to heartbeat")
    anchor = utc_now() + timedelta(seconds=0.5)
    cluster.add(
        "long",
        "slow_until_stopped",
        params={"seconds": RUN_SECONDS, "record": str(cluster.record), "tag": "long"},
        policy=Policy(overlap=overlap),
        trigger=IntervalTrigger(EVERY, anchor),
        next_fire_at=anchor,
    )
    return anchor


def _settle(deployment: Deployment, enough: Any, what: str) -> list[Run]:
    """Wait for ``enough()``, pause ``long``, wait for its last run, stop the workers; its rows."""
    cluster = deployment.cluster
    wait_until(enough, 90, what)
    assert cluster.cli("pause", "long").returncode == 0
    wait_until(
        lambda: all(r.status not in (RunStatus.running, RunStatus.pending) for r in cluster.runs("long")),
        60,
        "the last run to end",
    )
    assert [w.stop() for w in cluster.workers] == [0] * len(cluster.workers)
    return cluster.runs("long")


def _executions(cluster: Cluster) -> list[tuple[float, float, str]]:
    """(start, end, fire time) of each run the pipeline recorded, by start; a stopped run ended
    when its process took the SIGTERM."""
    ends = {r["scheduled_for"]: r["at"] for r in cluster.records("end") + cluster.records("stopped")}
    return sorted(
        (r["at"], ends.get(r["scheduled_for"], float("inf")), r["scheduled_for"]) for r in cluster.records("start")
    )


def _claimed_once(runs: list[Run], anchor: datetime, cluster: Cluster) -> None:
    """Every fire time from the first to the last has one row, and started at most once."""
    keys = [r.scheduled_for for r in runs]
    assert len(keys) == len(set(keys)), "a fire time with two rows"
    assert keys == [anchor + EVERY * k for k in range(len(keys))], "a fire time without a row"
    starts = Counter(r["scheduled_for"] for r in cluster.records("start"))
    assert max(starts.values()) == 1, "one fire time started twice"


def _overlaps(cluster: Cluster) -> list[tuple[str, str]]:
    return [(a, b) for (_, end, a), (start, _, b) in itertools.pairwise(_executions(cluster)) if start < end]


def test_overlap_skip_holds_across_hosts_with_redis_locks_set_in_the_environment(deployment: Deployment) -> None:
    for host in deployment.hosts:
        env = {
            "FLOWYML_SCHEDULER_LOCK_BACKEND": "redis",
            "FLOWYML_SCHEDULER_REDIS_URL": deployment.redis.url_for(host.gateway),
        }
        deployment.start_worker(host, "--max-concurrent", "1", env=env)
    anchor = _long_schedule(deployment, Overlap.skip)
    cluster = deployment.cluster

    def skipped_elsewhere() -> list[Run]:
        by_time = {r.scheduled_for: r for r in cluster.runs("long")}
        return [
            r
            for r in by_time.values()
            if r.status is RunStatus.skipped
            and any(
                o.status is RunStatus.running or o.status is RunStatus.succeeded
                for o in by_time.values()
                if o.host != r.host and o.scheduled_for < r.scheduled_for
            )
        ]

    runs = _settle(deployment, lambda: len(cluster.records("end")) >= 3 and skipped_elsewhere(), "runs and skips")
    _claimed_once(runs, anchor, cluster)
    assert {r.host for r in runs} == {"host-a", "host-b"}, "one host did all the work"
    assert {r.status for r in runs} == {RunStatus.succeeded, RunStatus.skipped}
    assert _overlaps(cluster) == [], "two runs of a skip schedule went at once on two hosts"
    health = cluster.store.list_workers()
    assert {w.lock_backend for w in health} == {"redis"}


def test_file_locks_on_separate_hosts_do_not_hold_overlap_which_is_why_redis_exists(deployment: Deployment) -> None:
    """The case the Redis backend is for, shown: it makes the test above one that can fail."""
    for host in deployment.hosts:
        deployment.start_worker(host, "--max-concurrent", "1")
    _long_schedule(deployment, Overlap.skip)
    cluster = deployment.cluster
    _settle(deployment, lambda: _overlaps(cluster), "two runs at once on two hosts")
    assert "overlap holds only among the workers sharing this host's state directory" in cluster.workers[0].log()


def test_overlap_queue_holds_across_hosts(deployment: Deployment) -> None:
    for host in deployment.hosts:
        deployment.start_worker(host, "--max-concurrent", "2", *deployment.redis_options(host))
    anchor = _long_schedule(deployment, Overlap.queue)
    cluster = deployment.cluster

    def waited_across_hosts() -> bool:
        by_time = {r.scheduled_for.isoformat(): r for r in cluster.runs("long")}
        done = [e for e in _executions(cluster) if e[1] != float("inf")]
        return any(
            by_time[a].host != by_time[b].host and start >= end and start - end < 1.0
            for (_, end, a), (start, _, b) in itertools.pairwise(done)
            if a in by_time and b in by_time
        )

    runs = _settle(deployment, lambda: len(cluster.records("end")) >= 3 and waited_across_hosts(), "a queued run")
    _claimed_once(runs, anchor, cluster)
    assert _overlaps(cluster) == [], "two runs of a queue schedule went at once"
    for run in runs:
        if run.status is RunStatus.skipped:  # or waiting when _settle paused the schedule
            assert run.error in (
                "a run was already waiting behind the running one (overlap: queue)",
                "not started: the schedule was paused before its fire time",
            )
        else:
            assert run.status is RunStatus.succeeded, run


def test_overlap_replace_stops_the_run_on_the_other_host_before_its_replacement_starts(
    deployment: Deployment,
) -> None:
    for host in deployment.hosts:
        deployment.start_worker(host, "--max-concurrent", "1", *deployment.redis_options(host))
    anchor = _long_schedule(deployment, Overlap.replace)
    cluster = deployment.cluster

    def replaced_across_hosts() -> list[Run]:
        runs = cluster.runs("long")
        by_time = {r.scheduled_for: r for r in runs}
        return [
            r
            for r in runs
            if r.status is RunStatus.interrupted
            and (after := by_time.get(r.scheduled_for + EVERY)) is not None
            and after.host is not None
            and after.host != r.host
        ]

    runs = _settle(deployment, lambda: len(replaced_across_hosts()) >= 2, "two runs replaced from the other host")
    _claimed_once(runs, anchor, cluster)
    replaced = [r for r in runs if r.status is RunStatus.interrupted]
    for run in replaced:
        assert run.error is not None and "(overlap: replace)" in run.error, run.error
        assert run.duration_seconds is not None and run.duration_seconds < RUN_SECONDS
    stopped = {r["scheduled_for"] for r in cluster.records("stopped")}
    assert {r.scheduled_for.isoformat() for r in replaced} <= stopped, "a replaced run was not stopped"
    assert not stopped & {r["scheduled_for"] for r in cluster.records("end")}, "a replaced run reached its end"
    assert _overlaps(cluster) == [], "a replacement started before the run it replaced had stopped"
    logs = "".join(w.log() for w in cluster.workers)
    assert "stopping it: replaced by the run for" in logs  # the owner stopped it, seen through the store
