"""Shared plumbing of the benchmark suite (``bench/run.py``).

Machine details, statistics, stores filled in bulk, worker processes, CPU and memory
accounting from ``/proc``, PostgreSQL schemas of the suite's own, and the APScheduler side
(``bench/apscheduler_side.py``, always run as a subprocess so that APScheduler is needed
only when it is installed).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import math
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from flowyml_sched.application import next_fire_at
from flowyml_sched.model import Schedule
from flowyml_sched.store import open_store
from flowyml_sched.store.engine import create_store_engine
from flowyml_sched.store.schema import runs, schedules, workers
from flowyml_sched.triggers import CronTrigger, IntervalTrigger, parse_duration

UTC = timezone.utc
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
APS_SIDE = BENCH_DIR / "apscheduler_side.py"

NOOP_PIPELINE = "bench_jobs:noop"
RECORDING_PIPELINE = "bench_jobs:record_start"
FAR_CRON = "0 0 1 1 *"
"""The cron of the schedules that never come due during a benchmark (midnight UTC, 1 January)."""
DUE_EVERY = "365d"
"""The interval of the schedules a benchmark makes due: armed at an instant, then a year later."""

PG_CANDIDATE_URLS = (
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://root@127.0.0.1:5432/test",
)


# -- options ---------------------------------------------------------------------------------


@dataclass
class Options:
    """What ``bench/run.py`` was asked for, shared by every benchmark."""

    quick: bool
    repeat: int | None
    workdir: Path
    pg_url: str | None
    pg_note: str | None
    apscheduler: bool
    aps_note: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    def reps(self, full: int = 5, quick: int = 5) -> int:
        """Repetitions: ``--repeat`` if given, else ``full`` (or ``quick`` with ``--quick``)."""
        return self.repeat or (quick if self.quick else full)

    @property
    def worker_args(self) -> list[str]:
        """Extra ``run-worker`` options: none (the defaults) except with ``--quick``, which polls
        every 0.25 s so that its short windows need short margins."""
        return ["--poll-interval", "0.25"] if self.quick else []

    def backends(self, tag: str) -> Iterator[tuple[str, str]]:
        """("sqlite", url) of a fresh file, then ("postgresql", url) of a fresh schema (dropped after)."""
        directory = self.workdir / tag
        directory.mkdir(parents=True, exist_ok=True)
        yield "sqlite", sqlite_url(directory / "store.db")
        if self.pg_url:
            with pg_schema(self.pg_url) as url:
                yield "postgresql", url


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def find_postgres(explicit: str | None) -> tuple[str | None, str | None]:
    """(url, None) of a reachable PostgreSQL database, or (None, why not)."""
    candidates = (
        (explicit,)
        if explicit
        else tuple(u for u in (os.environ.get("FLOWYML_BENCH_PG_URL"), os.environ.get("FLOWYML_TEST_PG_URL")) if u)
        or PG_CANDIDATE_URLS
    )
    problems = []
    for candidate in candidates:
        engine = sa.create_engine(candidate, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as conn:
                conn.execute(sa.select(1))
            return candidate, None
        except Exception as exc:
            first = str(getattr(exc, "orig", exc)).strip().splitlines()
            problems.append(f"{sa.make_url(candidate).render_as_string()}: {first[0] if first else type(exc).__name__}")
        finally:
            engine.dispose()
    return None, "PostgreSQL not reachable (" + "; ".join(problems) + ")"


def find_apscheduler() -> tuple[bool, str | None]:
    if importlib.util.find_spec("apscheduler") is None:
        return False, "APScheduler is not installed (pip install -e '.[bench]')"
    major = version("apscheduler").split(".")[0]
    if major != "3":
        return False, f"APScheduler {version('apscheduler')} installed; the comparison is written for 3.x"
    return True, None


_SCHEMAS: list[tuple[str, str]] = []


@contextlib.contextmanager
def pg_schema(server_url: str) -> Iterator[str]:
    """URL of a fresh schema ``bench_<hex>`` (first on the search_path), dropped on exit."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    admin.dispose()
    _SCHEMAS.append((server_url, schema))
    url = sa.make_url(server_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        _drop_schema(server_url, schema)


def _drop_schema(server_url: str, schema: str) -> None:
    if (server_url, schema) not in _SCHEMAS:
        return
    _SCHEMAS.remove((server_url, schema))
    admin = sa.create_engine(server_url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True, if_exists=True))
    finally:
        admin.dispose()


@atexit.register
def _cleanup() -> None:
    for proc in list(_PROCESSES):
        _kill(proc)
    for server_url, schema in list(_SCHEMAS):
        with contextlib.suppress(Exception):
            _drop_schema(server_url, schema)


# -- statistics ------------------------------------------------------------------------------


def summary(values: Sequence[float], digits: int = 6) -> dict[str, Any]:
    """Median, minimum and maximum of the repetitions (and how many)."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "n": len(values),
    }


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` 0.99 for p99)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def fmt_ms(stats: dict[str, Any], scale: float = 1e3, digits: int = 1) -> str:
    """``12.3 ms (11.0-14.2)`` from a :func:`summary` of seconds."""
    m, lo, hi = (stats[k] * scale for k in ("median", "min", "max"))
    return f"{m:.{digits}f} ms ({lo:.{digits}f}-{hi:.{digits}f})"


def fmt_stats(stats: dict[str, Any], unit: str = "", scale: float = 1.0, digits: int = 2) -> str:
    m, lo, hi = (stats[k] * scale for k in ("median", "min", "max"))
    suffix = f" {unit}" if unit else ""
    return f"{m:,.{digits}f}{suffix} ({lo:,.{digits}f}-{hi:,.{digits}f})"


def target(text: str, measured: str, passed: bool | None, note: str | None = None) -> dict[str, Any]:
    """One row of the targets table; ``passed`` None when it could not be measured."""
    return {"target": text, "measured": measured, "pass": passed, "note": note}


# -- the machine -----------------------------------------------------------------------------


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def code_state() -> dict[str, Any]:
    """Which flowyml-sched was measured: the git commit, the package files changed since, and a
    hash of the package's sources (the tree may be edited while the suite runs)."""
    import hashlib

    package = BENCH_DIR.parent / "flowyml_sched"
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    state: dict[str, Any] = {"sources_sha256": digest.hexdigest()[:16], "commit": None, "changed": None}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(BENCH_DIR.parent)]
        state["commit"] = (
            subprocess.run(
                [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
        changed = subprocess.run(
            [*git, "status", "--porcelain", "--", "flowyml_sched"], capture_output=True, text=True, timeout=10
        ).stdout
        state["changed"] = sorted(line[3:] for line in changed.splitlines())
    return state


def machine(pg_url: str | None = None) -> dict[str, Any]:
    """nproc, CPU model, memory, Python and the versions of what is measured."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    memory = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) // 1024
    info: dict[str, Any] = {
        "nproc": affinity or os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_mib": memory,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": None,
    }
    for package in ("flowyml-sched", "sqlalchemy", "psycopg", "croniter", "typer", "rich", "apscheduler"):
        info[package.replace("-", "_")] = _package_version(package)
    if pg_url:
        engine = sa.create_engine(pg_url, poolclass=sa.pool.NullPool)
        with contextlib.suppress(Exception), engine.connect() as conn:
            info["postgresql"] = conn.execute(sa.text("SHOW server_version")).scalar()
        engine.dispose()
    return info


def _proc_stats() -> dict[tuple[int, int], tuple[int, int, str]]:
    """(pid, start time) -> (parent pid, CPU ticks, command name) of every process."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = Path(entry.path, "stat").read_text()
            name = text[text.index("(") + 1 : text.rindex(")")]
            fields = text[text.rindex(")") + 2 :].split()
            found[(int(entry.name), int(fields[19]))] = (int(fields[1]), int(fields[11]) + int(fields[12]), name)
    return found


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (``/proc/stat``: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Neighbours:
    """How busy the machine was during a benchmark: the 1-minute load average, the CPU (in
    cores) the whole machine used, the part of it that was not this benchmark's processes
    (``others_cores``: other tests, say, and the PostgreSQL server, which also serves the
    benchmark), and the long-lived processes that used the most of it."""

    def __enter__(self) -> Neighbours:
        self.began = time.monotonic()
        self.load_before = os.getloadavg()
        self.busy_before = _machine_busy_seconds()
        self.own_before = _own_seconds()
        self.before = _proc_stats()
        return self

    def __exit__(self, *exc: object) -> None:
        seconds = time.monotonic() - self.began
        machine_cores = (_machine_busy_seconds() - self.busy_before) / seconds
        own_cores = (_own_seconds() - self.own_before) / seconds
        after = _proc_stats()
        parents = {pid: ppid for (pid, _), (ppid, _, _) in after.items()}
        me = os.getpid()

        def ours(pid: int) -> bool:
            for _ in range(64):
                if pid == me:
                    return True
                pid = parents.get(pid, 0)
                if pid <= 1:
                    return False
            return False

        tick = os.sysconf("SC_CLK_TCK")
        busiest: dict[str, float] = {}
        for key, (_, ticks, name) in after.items():
            if not ours(key[0]) and key in self.before:
                busiest[name] = busiest.get(name, 0.0) + (ticks - self.before[key][1]) / tick
        self.report = {
            "seconds": round(seconds, 1),
            "loadavg_1min_before": round(self.load_before[0], 2),
            "loadavg_1min_after": round(os.getloadavg()[0], 2),
            "machine_cores": round(machine_cores, 2),
            "benchmark_cores": round(own_cores, 2),
            "others_cores": round(max(0.0, machine_cores - own_cores), 2),
            "busiest_others": sorted(
                ({"command": n, "cpu_seconds": round(s, 1)} for n, s in busiest.items() if s >= 1.0),
                key=lambda d: -d["cpu_seconds"],
            )[:5],
        }


# -- stores ----------------------------------------------------------------------------------


def _template_row(url: str, schedule: Schedule, now: datetime) -> dict[str, Any]:
    """The ``schedules`` row the store itself writes for ``schedule`` (then deleted again)."""
    with open_store(url) as store:
        store.apply(
            creates=[replace(schedule, next_fire_at=next_fire_at(schedule, now))], updates=[], deletes=[], now=now
        )
    engine = create_store_engine(url)
    try:
        with engine.write_engine.begin() as conn:
            row = dict(conn.execute(sa.select(schedules).where(schedules.c.name == schedule.name)).mappings().one())
            conn.execute(sa.delete(schedules).where(schedules.c.name == schedule.name))
    finally:
        engine.dispose()
    return row


def populate(
    url: str,
    idle: int,
    due: int = 0,
    *,
    due_pipeline: str = RECORDING_PIPELINE,
    idle_prefix: str = "idle-",
    due_prefix: str = "due-",
) -> list[str]:
    """Store ``idle`` schedules that are not due for months (cron :data:`FAR_CRON`) and ``due``
    interval schedules (every :data:`DUE_EVERY`) whose next fire time is months away until
    :func:`arm` moves it. Returns the due schedules' names.

    One schedule of each kind goes in through ``store.apply`` (so the row is the store's own);
    the others are copies of that row inserted with one executemany per 10,000.
    """
    now = datetime.now(UTC).replace(microsecond=0)
    rows: list[dict[str, Any]] = []
    if idle:
        template = _template_row(url, Schedule(f"{idle_prefix}tmpl", NOOP_PIPELINE, CronTrigger(FAR_CRON)), now)
        rows += [template | {"name": f"{idle_prefix}{i:06d}"} for i in range(idle)]
    names = [f"{due_prefix}{i:05d}" for i in range(due)]
    if due:
        trigger = IntervalTrigger(parse_duration(DUE_EVERY), now + timedelta(days=200))
        template = _template_row(url, Schedule(f"{due_prefix}tmpl", due_pipeline, trigger), now)
        rows += [template | {"name": name} for name in names]
    engine = create_store_engine(url)
    try:
        with engine.write_engine.begin() as conn:
            for start in range(0, len(rows), 10_000):
                conn.execute(sa.insert(schedules), rows[start : start + 10_000])
    finally:
        engine.dispose()
    return names


def arm(engine: sa.Engine, names: Sequence[str], instants: Sequence[datetime]) -> None:
    """Make schedule ``names[i]`` due at ``instants[i]`` (anchor and next fire time), in one transaction."""
    stmt = (
        sa.update(schedules)
        .where(schedules.c.name == sa.bindparam("target"))
        .values(anchor=sa.bindparam("at"), next_fire_at=sa.bindparam("at"))
    )
    with engine.begin() as conn:
        conn.execute(stmt, [{"target": n, "at": at} for n, at in zip(names, instants, strict=True)])


def write_engine(url: str) -> sa.Engine:
    """An engine with the store's own connection settings (on SQLite: WAL, busy timeout, BEGIN IMMEDIATE)."""
    return create_store_engine(url).write_engine


def finished_runs(engine: sa.Engine, prefix: str, since: datetime) -> int:
    stmt = sa.select(sa.func.count()).where(
        runs.c.schedule_name.like(f"{prefix}%"), runs.c.scheduled_for >= since, runs.c.status != "running"
    )
    with engine.connect() as conn:
        return conn.execute(stmt).scalar_one()


def wait_finished(engine: sa.Engine, prefix: str, since: datetime, count: int, timeout: float) -> int:
    """Wait until ``count`` runs of schedules named ``prefix*`` fired at or after ``since`` are
    finished (or ``timeout`` seconds pass); return how many are."""
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = finished_runs(engine, prefix, since)
        if done >= count:
            return done
        time.sleep(0.05)
    return done


def run_rows(engine: sa.Engine, prefix: str, since: datetime) -> list[sa.Row]:
    stmt = sa.select(runs.c.scheduled_for, runs.c.started_at, runs.c.finished_at, runs.c.status).where(
        runs.c.schedule_name.like(f"{prefix}%"), runs.c.scheduled_for >= since
    )
    with engine.connect() as conn:
        return list(conn.execute(stmt))


# -- processes -------------------------------------------------------------------------------

_PROCESSES: list[subprocess.Popen[bytes]] = []


def cli() -> str:
    """The ``flowyml-sched`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("flowyml-sched")
    if not script.exists():
        raise SystemExit(f"{script} is missing: install the project into this environment (pip install -e .)")
    return str(script)


def timed_process(args: Sequence[str], env: dict[str, str], timeout: float = 1800) -> float:
    """Wall seconds of the process ``args`` (stdout to /dev/null); RuntimeError with the end
    of its stderr when it fails."""
    began = time.perf_counter()
    done = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=timeout)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {done.returncode}: {done.stderr.decode()[-2000:]}")
    return elapsed


def empty_sqlite_store(directory: Path) -> Path:
    """``directory/empty.db``: a SQLite store with its schema and nothing in it, to copy."""
    directory.mkdir(parents=True, exist_ok=True)
    empty = directory / "empty.db"
    open_store(sqlite_url(empty)).close()
    return empty


def child_env(workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of the suite's subprocesses: ``bench/`` on PYTHONPATH (for
    ``bench_jobs``), no flowyml-sched settings or config file from the user."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FLOWYML_SCHEDULER_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH")) if p)
    env["XDG_CONFIG_HOME"] = str(workdir / "xdg-config")
    env["XDG_STATE_HOME"] = str(workdir / "xdg-state")
    env.update(extra)
    return env


def spawn(args: Sequence[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a long-running subprocess in a session of its own, output to ``log_path``; killed at exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(args), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    _PROCESSES.append(proc)
    return proc


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if proc in _PROCESSES:
        _PROCESSES.remove(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int | None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Returns the exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    _kill(proc)
    return proc.returncode


def log_tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


class Workers:
    """``count`` processes of ``flowyml-sched run-worker --in-process`` on one store (with
    ``in_process`` False, in the default mode: each run a child process)."""

    def __init__(
        self,
        url: str,
        count: int,
        workdir: Path,
        *,
        args: Iterable[str] = (),
        env: dict[str, str] | None = None,
        in_process: bool = True,
    ):
        self.url = url
        self.workdir = workdir
        state = workdir / "worker-state"
        self.logs = [workdir / f"worker-{i}.log" for i in range(count)]
        mode = ["--in-process"] if in_process else []
        command = [cli(), "run-worker", "--db-url", url, "--state-dir", str(state), *mode, *args]
        environment = child_env(workdir, **(env or {}))
        self.procs = [spawn(command, log, environment) for log in self.logs]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def wait_alive(self, engine: sa.Engine, timeout: float = 60.0) -> None:
        """Wait until every process has written its first heartbeat (it is then serving)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc, log in zip(self.procs, self.logs, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"worker {proc.pid} exited with {proc.returncode}:\n{log_tail(log)}")
            with engine.connect() as conn:
                alive = conn.execute(
                    sa.select(sa.func.count()).where(workers.c.pid.in_(self.pids), workers.c.status == "alive")
                ).scalar_one()
            if alive >= len(self.procs):
                return
            time.sleep(0.05)
        raise RuntimeError(f"workers {self.pids} not serving after {timeout:g} s:\n{log_tail(self.logs[0])}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            stop(proc)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads, from ``/proc/<pid>/stat``), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ns(pid: int) -> int:
    """CPU time on the run queue of the process's live threads (``/proc/<pid>/task/*/schedstat``), in ns."""
    total = 0
    for task in os.scandir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError, ValueError):
            total += int(Path(task.path, "schedstat").read_text().split()[0])
    return total


def vm_status(pid: int) -> dict[str, int]:
    """VmHWM (peak RSS) and VmRSS of the process, in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            found[key] = int(value.split()[0])
    return found


def aps_command(*args: str) -> list[str]:
    return [sys.executable, str(APS_SIDE), *args]


def run_aps(args: Sequence[str], workdir: Path, timeout: float) -> dict[str, Any]:
    """Run ``apscheduler_side.py ARGS --result FILE`` to the end and return its JSON result."""
    result = workdir / f"aps-{uuid.uuid4().hex[:8]}.json"
    done = subprocess.run(
        aps_command(*args, "--result", str(result)),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(workdir),
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"apscheduler_side.py {' '.join(args[:1])} failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    return json.loads(result.read_text())


def rep_stats(lateness: list[float], expected: int) -> dict[str, Any]:
    """One repetition's lateness figures (seconds): count, p50, p99, max."""
    if not lateness:
        return {"count": 0, "expected": expected}
    return {
        "count": len(lateness),
        "expected": expected,
        "p50_s": percentile(lateness, 0.50),
        "p99_s": percentile(lateness, 0.99),
        "max_s": max(lateness),
    }


def summarise(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """The repetitions' figures, each as the median with min and max (:func:`summary`)."""
    complete = [r for r in reps if r.get("count")]
    out: dict[str, Any] = {"reps": reps, "incomplete_reps": sum(1 for r in reps if r.get("count", 0) < r["expected"])}
    for key in ("p50_s", "p99_s", "max_s"):
        if complete:
            out[key] = summary([r[key] for r in complete])
    return out


def read_record(path: Path, since: float) -> list[float]:
    """Lateness (seconds) of the starts ``bench_jobs.record_start`` wrote for fire times from ``since``."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        due, started = (float(x) for x in line.split())
        if due >= since - 1e-6:
            found.append(started - due)
    return found
