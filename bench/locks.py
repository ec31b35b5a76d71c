"""10. Run locks: what a Redis run lock adds to a run's start, against file locks.

Overlap ``skip`` (the default) takes the schedule's run lock before the run starts: file locks
(``--lock-backend file``, a file per schedule in ``--state-dir``) or Redis locks
(``--lock-backend redis``: redis-py's ``Lock``, a key per schedule). Both are measured in the
same run, on the same due schedules: each lock backend gets a store of its own (a schema of
the suite's own on PostgreSQL, a file on SQLite) holding the same ``stored`` schedules, and
workers of its own that stay up across the repetitions; the repetitions alternate (file,
redis, file, redis, ...), each one arming the ``due`` schedules of one store at instants spread
over ``window`` seconds, ``margin`` seconds ahead. Lateness is read as in ``lateness.py``:
the run row's ``started_at`` minus ``scheduled_for``, and the pipeline's own first line
(``bench_jobs.record_start``) minus ``scheduled_for``; p50/p99/max per repetition.

- 1 worker process, PostgreSQL and SQLite (on SQLite a Redis-locked worker also claims each
  fire time in Redis: a second round trip).
- 2 hosts x 2 worker processes on PostgreSQL + Redis: as root, with network namespaces, hosts
  of ``tests/servers.py`` (their own hostname and network, a state directory each) sharing a
  PostgreSQL and a Redis server of the benchmark's own that listen on the hosts' gateways;
  otherwise 2 state directories on this machine (the results say which). File locks in the
  same setup for comparison (one host's file locks do not bind the other host's workers).
- The locks alone, in this process: ``acquire(0)`` + ``release()`` of the product's
  ``FileLocks`` and ``RedisLocks``, back to back.

Workers run with ``--in-process``: in the default child-process mode the pipeline's first
line comes after a new Python interpreter has started, tens to hundreds of milliseconds on a
2-core machine, whose jitter would swamp the 2 ms the target asks about; the lock is taken
before the run starts in both modes.

Redis: ``$FLOWYML_BENCH_REDIS_URL`` when set; else a ``redis-server`` of the benchmark's own
on a free port (no persistence), stopped afterwards; else the machine's at
``redis://127.0.0.1:6379/0``; else the Redis parts are left out, with a note.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import common
import sqlalchemy as sa

NAME = "locks"
TITLE = "10. Run locks"
UTC = timezone.utc
TESTS_DIR = common.BENCH_DIR.parent / "tests"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"
LOCKS = ("file", "redis")
TARGET_MS = 2.0
REDIS_CALLS = ("set", "evalsha", "ping")
"""The commands a worker sends for its run locks: ``SET NX PX`` takes a lock, ``EVALSHA`` runs
redis-py's scripts that extend and release it, ``PING`` is the lock keeper's question (the
commands those scripts run inside the server are counted apart by Redis, and left out)."""


def _sizes(opt: common.Options) -> dict[str, Any]:
    if opt.quick:
        return {"stored": 100, "due": 10, "window_s": 0.3, "margin_s": 0.6, "lock_ops": 200, "hosts": 2, "per_host": 2}
    return {"stored": 1_000, "due": 150, "window_s": 6.0, "margin_s": 2.0, "lock_ops": 1_000, "hosts": 2, "per_host": 2}


# -- Redis -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)


def _redis_version(url: str) -> str | None:
    """The server's version, or None when it does not answer."""
    client = _redis_client(url)
    try:
        return str(client.info("server")["redis_version"])
    except Exception:
        return None
    finally:
        client.close()


def _redis_counts(url: str) -> dict[str, Any] | None:
    """Connections the server has accepted and calls per command so far (``INFO``), or None."""
    client = _redis_client(url)
    try:
        stats, commands = client.info("stats"), client.info("commandstats")
    except Exception:
        return None
    finally:
        client.close()
    return {
        "connections": int(stats["total_connections_received"]),
        "commands": {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in commands.items()},
    }


@contextlib.contextmanager
def _own_redis_server(program: str, workdir: Path) -> Iterator[str]:
    """A ``redis-server`` on a free loopback port, without persistence; stopped on exit."""
    directory = workdir / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    for _attempt in range(3):
        port = _free_port()
        argv = [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", str(directory)]  # fmt: skip
        proc = common.spawn(argv, directory / "redis.log", dict(os.environ))
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline and _redis_version(url) is None:
            time.sleep(0.05)
        if proc.poll() is None and _redis_version(url) is not None:
            break
        common.stop(proc)
    else:
        raise RuntimeError(f"redis-server did not start:\n{common.log_tail(directory / 'redis.log')}")
    try:
        yield url
    finally:
        common.stop(proc, timeout=10)


@contextlib.contextmanager
def _redis(opt: common.Options) -> Iterator[tuple[str | None, str]]:
    """(URL, what it is) of the Redis server the 1-worker parts use, or (None, why not)."""
    try:
        import redis  # noqa: F401
    except ImportError:
        yield None, "Redis parts skipped: redis-py is not installed (pip install -e '.[multi]')"
        return
    explicit = os.environ.get("FLOWYML_BENCH_REDIS_URL")
    if explicit:
        found = _redis_version(explicit)
        if found is None:
            yield None, f"Redis parts skipped: $FLOWYML_BENCH_REDIS_URL ({_redacted(explicit)}) does not answer"
        else:
            yield explicit, f"Redis {found} at $FLOWYML_BENCH_REDIS_URL ({_redacted(explicit)})"
        return
    program = shutil.which("redis-server")
    if program:
        with _own_redis_server(program, opt.workdir / NAME) as url:
            yield (
                url,
                f"Redis {_redis_version(url)}: a `redis-server` of the benchmark's own on loopback, no persistence",
            )
        return
    found = _redis_version(LOCAL_REDIS)
    if found is None:
        yield None, f"Redis parts skipped: no redis-server on PATH and none answers at {LOCAL_REDIS}"
    else:
        yield LOCAL_REDIS, f"Redis {found}: the machine's, at {LOCAL_REDIS}"


def _redacted(url: str) -> str:
    from flowyml_sched.locks.urls import redacted

    return redacted(url)


# -- workers -----------------------------------------------------------------------------------


@dataclass
class _Place:
    """Where a worker process runs: a host of ``tests/servers.py`` (None: this machine), its
    state directory, and the store and Redis URLs as seen from there."""

    host: Any
    state_dir: Path
    db_url: str
    redis_url: str | None


class _Workers(common.Workers):
    """``flowyml-sched run-worker --in-process`` processes, each at a :class:`_Place` of its own."""

    def __init__(self, places: Sequence[_Place], lock: str, workdir: Path, args: Sequence[str], env: dict[str, str]):
        self.workdir = workdir
        self.logs = [workdir / f"worker-{i}.log" for i in range(len(places))]
        environment = common.child_env(workdir, **env)
        self.procs = []
        for place, log in zip(places, self.logs, strict=True):
            command = [common.cli(), "run-worker", "--db-url", place.db_url, "--state-dir", str(place.state_dir),
                       "--in-process", "--lock-backend", lock, *args]  # fmt: skip
            if lock == "redis":
                command += ["--redis-url", str(place.redis_url)]
            if place.host is not None:
                command = place.host.command(command)
            self.procs.append(common.spawn(command, log, environment))


@dataclass
class _Side:
    """One lock backend of a comparison: its store, its workers, its repetitions."""

    lock: str
    engine: sa.Engine
    names: list[str]
    record: Path
    workers: _Workers
    claim: list[dict[str, Any]] = field(default_factory=list)
    start: list[dict[str, Any]] = field(default_factory=list)
    missed: int = 0

    def measure(self, size: dict[str, Any]) -> None:
        """One repetition: arm the due schedules, wait for their runs, read the lateness."""
        base = datetime.now(UTC) + timedelta(seconds=size["margin_s"])
        step = size["window_s"] / len(self.names)
        common.arm(self.engine, self.names, [base + timedelta(seconds=step * i) for i in range(len(self.names))])
        common.wait_finished(self.engine, "due-", base, len(self.names), size["margin_s"] + size["window_s"] + 60)
        rows = common.run_rows(self.engine, "due-", base)
        claim = [(r.started_at - r.scheduled_for).total_seconds() for r in rows if r.started_at is not None]
        self.claim.append(
            common.rep_stats(claim, len(self.names)) | {"not_run": [r.status for r in rows if not r.started_at]}
        )
        self.start.append(common.rep_stats(common.read_record(self.record, base.timestamp()), len(self.names)))

    def result(self) -> dict[str, Any]:
        return {
            "lock": self.lock,
            "claim": common.summarise(self.claim),
            "pipeline_start": common.summarise(self.start),
        }


def _compare(
    opt: common.Options,
    size: dict[str, Any],
    label: str,
    stores: dict[str, str],
    places: dict[str, list[_Place]],
    locks: Sequence[str],
    redis_url: str,
) -> list[dict[str, Any]]:
    """Workers for each lock backend (``stores[lock]``: the store's URL from here, ``places[lock]``:
    where its workers run), then repetitions alternating between the backends. ``redis_url``:
    the Redis server the workers use, from here (its command counts are read before and after)."""
    sides: list[_Side] = []
    try:
        for lock in locks:
            workdir = opt.workdir / NAME / f"{label}-{lock}"
            workdir.mkdir(parents=True, exist_ok=True)
            names = common.populate(stores[lock], size["stored"] - size["due"], size["due"])
            record = workdir / "record.txt"
            workers = _Workers(places[lock], lock, workdir, opt.worker_args, {"BENCH_RECORD": str(record)})
            sides.append(_Side(lock, common.write_engine(stores[lock]), names, record, workers))
        for side in sides:
            side.workers.wait_alive(side.engine)
        before = _redis_counts(redis_url)
        for _ in range(opt.reps()):
            for side in sides:
                side.measure(size)
        after = _redis_counts(redis_url)
        results = [side.result() for side in sides]
        runs = opt.reps() * size["due"]
        for result in results:
            if result["lock"] == "redis" and before and after:
                result["redis_traffic"] = {
                    "connections_opened": after["connections"] - before["connections"],
                    "commands_per_run": {
                        name: round((after["commands"].get(name, 0) - before["commands"].get(name, 0)) / runs, 3)
                        for name in REDIS_CALLS
                    },
                }
        return results
    finally:
        for side in sides:
            side.workers.stop()
            side.engine.dispose()


# -- 1 worker process ----------------------------------------------------------------------------


@contextlib.contextmanager
def _stores(opt: common.Options, backend: str, tag: str) -> Iterator[dict[str, str]]:
    """A store per lock backend: SQLite files, or schemas of the suite's own on PostgreSQL."""
    if backend == "sqlite":
        directory = opt.workdir / NAME / tag
        directory.mkdir(parents=True, exist_ok=True)
        yield {lock: common.sqlite_url(directory / f"{lock}.db") for lock in LOCKS}
        return
    assert opt.pg_url is not None
    with common.pg_schema(opt.pg_url) as file_url, common.pg_schema(opt.pg_url) as redis_url:
        yield {"file": file_url, "redis": redis_url}


def _one_worker(opt: common.Options, size: dict[str, Any], backend: str, redis_url: str) -> dict[str, Any]:
    with _stores(opt, backend, f"one-{backend}") as stores:
        places = {
            lock: [_Place(None, opt.workdir / NAME / f"one-{backend}-{lock}" / "state", stores[lock], redis_url)]
            for lock in LOCKS
        }
        sides = _compare(opt, size, f"one-{backend}", stores, places, LOCKS, redis_url)
    return {"backend": backend, "topology": "1 worker", "hosts": None, "processes": 1, "sides": sides}


# -- 2 hosts x 2 workers ---------------------------------------------------------------------------


def _servers_module() -> tuple[Any, str | None]:
    """``tests/servers.py``, or why hosts cannot be made here."""
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    try:
        import servers
    except Exception as exc:
        return None, f"tests/servers.py could not be imported ({type(exc).__name__}: {exc})"
    reason = servers._tools_or_reason()
    return (servers, None) if not isinstance(reason, str) else (None, reason)


def _schema_url_at(url: str, address: str) -> str:
    return sa.make_url(url).set(host=address).render_as_string(hide_password=False)


def _on_hosts(opt: common.Options, size: dict[str, Any], servers: Any, locks: Sequence[str]) -> dict[str, Any]:
    """Network namespaces as hosts; PostgreSQL and Redis of the benchmark's own on their gateways."""
    import pytest

    try:
        with contextlib.ExitStack() as stack:
            made = stack.enter_context(servers.hosts(size["hosts"]))
            gateways = [host.gateway for host in made]
            pg = stack.enter_context(servers.own_postgres(gateways))
            redis_server = stack.enter_context(servers.own_redis(gateways))
            stores = {lock: stack.enter_context(common.pg_schema(pg.url)) for lock in locks}
            places = {
                lock: [
                    _Place(
                        host,
                        opt.workdir / NAME / f"hosts-{lock}" / host.hostname,
                        _schema_url_at(stores[lock], host.gateway),
                        redis_server.url_for(host.gateway),
                    )
                    for host in made
                    for _ in range(size["per_host"])
                ]
                for lock in locks
            }
            sides = _compare(opt, size, "hosts", stores, places, locks, redis_server.url)
            where = (
                f"{len(made)} hosts: network namespaces ({', '.join(h.hostname for h in made)}) with their "
                f"own hostname, network and state directory; PostgreSQL {_pg_version(pg.url)} and Redis "
                f"{_redis_version(redis_server.url)} of the benchmark's own, listening on the hosts' gateways"
            )
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        raise _NoHosts(str(exc)) from None
    return {"sides": sides, "hosts": where}


class _NoHosts(Exception):
    """Hosts (network namespaces) could not be made: why."""


def _pg_version(url: str) -> str | None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SHOW server_version")).scalar())
    except Exception:
        return None
    finally:
        engine.dispose()


def _on_this_machine(opt: common.Options, size: dict[str, Any], redis_url: str, locks: Sequence[str]) -> dict:
    with _stores(opt, "postgresql", "dirs") as stores:
        places = {
            lock: [
                _Place(None, opt.workdir / NAME / f"dirs-{lock}" / f"host-{chr(97 + h)}", stores[lock], redis_url)
                for h in range(size["hosts"])
                for _ in range(size["per_host"])
            ]
            for lock in locks
        }
        sides = _compare(opt, size, "dirs", stores, places, locks, redis_url)
    return {"sides": sides}


def _two_hosts(opt: common.Options, size: dict[str, Any], redis_url: str, notes: list[str]) -> dict[str, Any]:
    # the quick run stays on this machine (seconds, not the namespaces' and servers' set-up),
    # and compares Redis locks only
    locks = ("redis",) if opt.quick else LOCKS
    servers, why = (None, "quick run") if opt.quick else _servers_module()
    found: dict[str, Any] | None = None
    if servers is not None:
        try:
            found = _on_hosts(opt, size, servers, locks)
        except _NoHosts as exc:
            why = str(exc)
    if found is None:
        found = _on_this_machine(opt, size, redis_url, locks)
        found["hosts"] = (
            f"not {size['hosts']} hosts but {size['hosts']} state directories on this machine ({why}); the suite's "
            "PostgreSQL and the Redis above"
        )
    processes = size["hosts"] * size["per_host"]
    topology = f"{size['hosts']} hosts x {size['per_host']} workers"
    return {"backend": "postgresql", "topology": topology, "processes": processes, **found}


# -- the locks alone ---------------------------------------------------------------------------------


def _lock_ops(opt: common.Options, size: dict[str, Any], redis_url: str) -> list[dict[str, Any]]:
    """``acquire(0)`` and ``release()`` of the product's lock objects, back to back, in this process."""
    from flowyml_sched.locks import FileLocks
    from flowyml_sched.locks.redis import RedisLocks, lock_ttl

    backends = {
        "file": FileLocks(opt.workdir / NAME / "ops-locks"),
        "redis": RedisLocks(redis_url, f"bench-{uuid.uuid4().hex[:8]}", lock_ttl(30.0)),
    }
    timings: dict[str, dict[str, list[float]]] = {lock: {"acquire": [], "release": []} for lock in LOCKS}
    try:
        backends["redis"].check()  # the connection pool's first connection, as a worker's heartbeat makes it
        for _ in range(opt.reps()):
            for lock, backend in backends.items():
                acquire, release = [], []
                for i in range(size["lock_ops"]):
                    held = backend.lock(f"due-{i % 100:05d}")
                    began = time.perf_counter()
                    if not held.acquire(0):
                        raise RuntimeError(f"{lock} lock due-{i % 100:05d} was not free")
                    taken = time.perf_counter()
                    held.release()
                    acquire.append(taken - began)
                    release.append(time.perf_counter() - taken)
                timings[lock]["acquire"].append(acquire)
                timings[lock]["release"].append(release)
    finally:
        backends["redis"].close()
    results = []
    for lock in LOCKS:
        entry: dict[str, Any] = {"lock": lock}
        for op in ("acquire", "release"):
            reps = timings[lock][op]
            entry[op] = {
                "p50_s": common.summary([common.percentile(r, 0.50) for r in reps], 7),
                "p99_s": common.summary([common.percentile(r, 0.99) for r in reps], 7),
                "mean_s": common.summary([statistics.fmean(r) for r in reps], 7),
            }
        results.append(entry)
    return results


# -- the section -----------------------------------------------------------------------------------


def run(opt: common.Options) -> dict[str, Any]:
    size = _sizes(opt)
    notes: list[str] = []
    configs: list[dict[str, Any]] = []
    lock_ops: list[dict[str, Any]] = []
    with _redis(opt) as (redis_url, redis_text):
        if redis_url is None:
            notes.append(redis_text)
        else:
            lock_ops = _lock_ops(opt, size, redis_url)
            backends = (["postgresql"] if opt.quick else ["postgresql", "sqlite"]) if opt.pg_url else ["sqlite"]
            for backend in backends:
                configs.append(_one_worker(opt, size, backend, redis_url))
            if opt.pg_url:
                configs.append(_two_hosts(opt, size, redis_url, notes))
    if not opt.pg_url:
        notes.append(
            f"PostgreSQL skipped (the 1-worker comparison ran on SQLite, 2 hosts x 2 workers not run): {opt.pg_note}"
        )
    elif opt.quick:
        notes.append("Quick run: SQLite left out; 2 hosts x 2 workers with Redis locks only.")
    return {
        "params": size | {"repetitions": opt.reps(), "worker_args": ["--in-process", *opt.worker_args]},
        "redis": redis_text,
        "configs": configs,
        "lock_ops": lock_ops,
        "notes": notes,
    }


def _fmt(fig: dict[str, Any], key: str) -> str:
    return common.fmt_ms(fig[key], digits=2) if key in fig else "n/a"


def _side(config: dict[str, Any], lock: str) -> dict[str, Any] | None:
    return next((s for s in config["sides"] if s["lock"] == lock), None)


def _difference(config: dict[str, Any], figure: str, key: str = "p99_s") -> float | None:
    """Redis minus file, of the medians, in seconds (None when a side lacks the figure)."""
    file_side, redis_side = _side(config, "file"), _side(config, "redis")
    if file_side is None or redis_side is None or key not in file_side[figure] or key not in redis_side[figure]:
        return None
    return redis_side[figure][key]["median"] - file_side[figure][key]["median"]


def markdown(report: dict[str, Any]) -> str:
    p = report["params"]
    lines = [
        f"Overlap `skip` (the default) takes the schedule's run lock before the run starts: file locks "
        f"(`--lock-backend file`) against Redis locks (`--lock-backend redis`), in the same run on the same due "
        f"schedules. {p['stored']:,} schedules stored in a store per lock backend, {p['due']} of them due spread "
        f"evenly over {p['window_s']:g} s; workers up across the repetitions, which alternate between the "
        f"backends (file, redis, file, ...). Median of {p['repetitions']} repetitions (min-max) of each "
        "repetition's p50/p99/max. *Row*: lateness of the run's start as history records it (the run row's "
        "`started_at` minus `scheduled_for`); *pipeline*: of the pipeline's own first line (`bench_jobs.record_start`). "
        "Workers run pipelines in their own process (`--in-process`): in the default child-process mode the "
        "pipeline's first line follows a new interpreter's start, tens to hundreds of ms on this machine, whose "
        "jitter would swamp the 2 ms asked about (the lock is taken before the run starts in both modes). On SQLite "
        "a Redis-locked worker also claims each fire time in Redis (a second round trip); in 2 hosts x 2 workers "
        "the file locks are each host's own (they do not bind the other host's workers): there for comparison. "
        f"{report['redis']}.",
        "",
        "| database | workers | locks | row p50 | row p99 | row max | pipeline p50 | pipeline p99 | pipeline max |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report["configs"]:
        for s in c["sides"]:
            incomplete = s["claim"].get("incomplete_reps") or s["pipeline_start"].get("incomplete_reps")
            note = f" ({incomplete} reps incomplete)" if incomplete else ""
            cells = [_fmt(s[fig], k) for fig in ("claim", "pipeline_start") for k in ("p50_s", "p99_s", "max_s")]
            lines.append(f"| {c['backend']} | {c['topology']} | {s['lock']}{note} | {' | '.join(cells)} |")
    differences = []
    for c in report["configs"]:
        row, pipeline = _difference(c, "claim"), _difference(c, "pipeline_start")
        if row is not None and pipeline is not None:
            differences.append(
                f"{c['backend']}, {c['topology']}: row {row * 1e3:+.2f} ms, pipeline {pipeline * 1e3:+.2f} ms"
            )
    if differences:
        lines += ["", "p99, Redis minus file (of the medians): " + "; ".join(differences) + "."]
    traffic = []
    for c in report["configs"]:
        side = _side(c, "redis")
        if side and side.get("redis_traffic"):
            t = side["redis_traffic"]
            calls = ", ".join(f"{name.upper()} {n:.2f}" for name, n in t["commands_per_run"].items())
            traffic.append(f"{c['backend']}, {c['topology']}: {calls}; {t['connections_opened']} connections opened")
    if traffic:
        lines += [
            "",
            "Redis commands per run (the server's counts over the repetitions; `SET` takes a lock, `EVALSHA` "
            "extends it at the run's end and releases it, `PING` is the lock keeper's): " + "; ".join(traffic) + ".",
        ]
    for c in report["configs"]:
        if c.get("hosts"):
            lines += ["", f"{c['topology']}: {c['hosts']}."]
    if report.get("lock_ops"):
        lines += [
            "",
            f"The locks alone, in the benchmark's process: `acquire(0)` then `release()` of the product's lock "
            f"objects, {p['lock_ops']:,} back to back per repetition; p50/p99 per repetition, median of "
            f"{p['repetitions']} (min-max).",
            "",
            "| locks | acquire p50 | acquire p99 | release p50 | release p99 |",
            "|---|---|---|---|---|",
        ]
        for entry in report["lock_ops"]:
            cells = [common.fmt_ms(entry[op][k], digits=3) for op in ("acquire", "release") for k in ("p50_s", "p99_s")]
            lines.append(f"| {entry['lock']} | {' | '.join(cells)} |")
    lines += [f"\n{note}" for note in report.get("notes", [])]
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    text = (
        f"p99 pipeline start lateness with Redis locks within {TARGET_MS:g} ms of file locks "
        "(PostgreSQL, 1 worker, same run)"
    )
    config = next(
        (c for c in report["configs"] if c["backend"] == "postgresql" and c["processes"] == 1),
        None,
    )
    if config is None:
        why = "PostgreSQL or Redis not available" if report["configs"] else "Redis not available"
        return [common.target(text, "not measured", None, why)]
    file_side, redis_side = _side(config, "file"), _side(config, "redis")
    difference = _difference(config, "pipeline_start")
    if difference is None or file_side is None or redis_side is None:
        return [common.target(text, "not measured", None, "no complete repetition")]
    measured = (
        f"{redis_side['pipeline_start']['p99_s']['median'] * 1e3:.2f} ms vs "
        f"{file_side['pipeline_start']['p99_s']['median'] * 1e3:.2f} ms ({difference * 1e3:+.2f} ms)"
    )
    return [common.target(text, measured, difference <= TARGET_MS / 1e3)]
