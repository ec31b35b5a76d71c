"""3. Idle cost: CPU used by a worker process while nothing is due.

One ``flowyml-sched run-worker --in-process`` (default settings: it sleeps until a write
to the schedules wakes it, or its heartbeat every 10 s) on a store of 10,000 schedules, none due for months; beside it, at the
same time, the same on PostgreSQL and APScheduler's ``BackgroundScheduler`` on a
``SQLAlchemyJobStore`` of 10,000 such jobs. After they are serving and a settling pause,
each repetition is a window of 60 s (``--quick``: 1 s) over which the process's CPU time
(utime + stime of all its threads, from ``/proc/<pid>/stat``) is read; the figure is that
CPU time as a percentage of one core.
"""

from __future__ import annotations

import time
from typing import Any

import common

NAME = "idle_cost"
TITLE = "3. Idle cost"


def _sizes(opt: common.Options) -> dict[str, Any]:
    if opt.quick:
        return {"stored": 100, "window_s": 1.0, "settle_s": 0.3}
    return {"stored": 10_000, "window_s": 60.0, "settle_s": 5.0}


def run(opt: common.Options) -> dict[str, Any]:
    size = _sizes(opt)
    procs: dict[str, Any] = {}
    to_stop = []
    backends = opt.backends(NAME)
    try:
        for backend, url in backends:
            common.populate(url, size["stored"])
            workdir = opt.workdir / NAME / backend
            workers = common.Workers(url, 1, workdir)
            to_stop.append(workers.stop)
            engine = common.write_engine(url)
            workers.wait_alive(engine)
            engine.dispose()
            procs[f"flowyml-sched ({backend})"] = workers.pids[0]
            if opt.apscheduler:
                ready = workdir / "aps-ready"
                result = workdir / "aps-result.json"
                args = [
                    "idle",
                    "--url",
                    url,
                    "--idle",
                    str(size["stored"]),
                    "--ready",
                    str(ready),
                    "--result",
                    str(result),
                ]
                proc = common.spawn(common.aps_command(*args), workdir / "aps.log", common.child_env(workdir))
                to_stop.append(lambda proc=proc: common.stop(proc))
                deadline = time.monotonic() + 120
                while not ready.exists():
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"APScheduler did not start:\n{common.log_tail(workdir / 'aps.log')}")
                    time.sleep(0.05)
                procs[f"APScheduler ({backend})"] = proc.pid
            if backend == "postgresql":
                break  # keep the schema (and the processes on it) until the measurement is done
        time.sleep(size["settle_s"])
        samples: dict[str, list[float]] = {name: [] for name in procs}
        samples_ns: dict[str, list[float]] = {name: [] for name in procs}
        for _ in range(opt.reps()):
            before = {name: (common.cpu_seconds(pid), common.cpu_ns(pid)) for name, pid in procs.items()}
            began = time.monotonic()
            time.sleep(size["window_s"])
            elapsed = time.monotonic() - began
            for name, pid in procs.items():
                ticks, ns = common.cpu_seconds(pid), common.cpu_ns(pid)
                samples[name].append((ticks - before[name][0]) / elapsed * 100)
                samples_ns[name].append((ns - before[name][1]) / 1e9 / elapsed * 100)
    finally:
        for stop in to_stop:
            stop()
        backends.close()
    results = [
        {
            "process": name,
            "cpu_percent_of_core": common.summary(samples[name], digits=4),
            "cpu_percent_schedstat": common.summary(samples_ns[name], digits=4),
        }
        for name in procs
    ]
    notes = [] if opt.apscheduler else [f"APScheduler skipped: {opt.aps_note}"]
    notes += [] if opt.pg_url else [f"PostgreSQL skipped: {opt.pg_note}"]
    return {"params": size | {"repetitions": opt.reps()}, "results": results, "notes": notes}


def markdown(report: dict[str, Any]) -> str:
    p = report["params"]
    lines = [
        f"CPU of one idle process with {p['stored']:,} schedules stored, none due, over windows of "
        f"{p['window_s']:g} s (all processes measured side by side); median of {p['repetitions']} windows (min-max).",
        "",
        "| process | CPU, % of one core | CPU seconds per hour |",
        "|---|---|---|",
    ]
    for r in report["results"]:
        cpu = r["cpu_percent_of_core"]
        lines.append(
            f"| {r['process']} | {common.fmt_stats(cpu, '%', digits=3)} | {common.fmt_stats(cpu, 's', 36, 1)} |"
        )
    lines += [f"\n{note}" for note in report.get("notes", [])]
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for r in report["results"]:
        if r["process"].startswith("flowyml-sched"):
            cpu = r["cpu_percent_of_core"]["median"]
            found.append(
                common.target(
                    f"idle worker CPU < 0.1% of one core, {report['params']['stored']:,} schedules, "
                    f"{r['process'].split('(')[1].rstrip(')')}",
                    f"{cpu:.3f}%",
                    cpu < 0.1,
                )
            )
    return found
