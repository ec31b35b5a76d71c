"""1. Dispatch lateness: how late a due fire time is claimed and its pipeline started.

Modes: ``default`` (``run-worker`` as installed: each run a child process, forked, prepared,
from the warm template of its pipeline's module and released at its instant),
``in-process`` (``--in-process``), and ``default, 1 s import``: the default mode with a
pipeline whose module takes 1 s to import (``bench_slow_import``).

The store holds ``stored`` schedules; ``due`` of them (interval schedules) are made due at
instants spread evenly over a ``window`` starting ``margin`` seconds after they are armed,
the rest not for months. Ours: the lateness of the pipeline's own start
(``bench_jobs.record_start``), which comes after the claim transaction has committed (the
durable claim included; with the default ``--claim-ahead`` it commits about 0.1 s before the
fire time and the run waits for its instant), and beside it the run row's ``started_at``
(when the worker started the run, as history shows it) minus ``scheduled_for``. APScheduler ``BackgroundScheduler`` + ``SQLAlchemyJobStore`` on the same database
with the same triggers, one process; lateness = the job function's start minus its
scheduled run time. Workers (ours) and the scheduler (theirs) stay up across the
repetitions; each repetition arms the due schedules anew.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import common

NAME = "lateness"
TITLE = "1. Dispatch lateness"
UTC = timezone.utc


SLOW_PIPELINE = "bench_slow_import:record_start"
"""The recording pipeline in a module whose import takes 1 s."""
MODES = {"default": False, "in-process": True}
"""Mode name to ``in_process``."""


def _sizes(opt: common.Options) -> dict[str, Any]:
    if opt.quick:
        return {"stored": 100, "due": 10, "window_s": 0.3, "margin_s": 0.6, "processes": [1, 2]}
    return {"stored": 10_000, "due": 200, "window_s": 10.0, "margin_s": 2.5, "processes": [1, 4]}


def _ours(
    opt: common.Options,
    url: str,
    backend: str,
    processes: int,
    names: list[str],
    size: dict,
    mode: str = "in-process",
    prefix: str = "due-",
) -> dict:
    workdir = opt.workdir / f"lateness-{backend}-{processes}-{mode.replace(' ', '').replace(',', '-')}"
    record = workdir / "record.txt"
    engine = common.write_engine(url)
    claim_reps, start_reps = [], []
    with common.Workers(
        url,
        processes,
        workdir,
        args=opt.worker_args,
        env={"BENCH_RECORD": str(record)},
        in_process=MODES[mode.split(",")[0]],
    ) as workers:
        workers.wait_alive(engine)
        for _ in range(opt.reps()):
            base = datetime.now(UTC) + timedelta(seconds=size["margin_s"])
            step = size["window_s"] / len(names)
            instants = [base + timedelta(seconds=step * i) for i in range(len(names))]
            common.arm(engine, names, instants)
            common.wait_finished(engine, prefix, base, len(names), size["margin_s"] + size["window_s"] + 60)
            rows = common.run_rows(engine, prefix, base)
            claim = [(r.started_at - r.scheduled_for).total_seconds() for r in rows if r.started_at is not None]
            claim_reps.append(common.rep_stats(claim, len(names)) | {"missed": sum(r.status == "missed" for r in rows)})
            start_reps.append(common.rep_stats(common.read_record(record, base.timestamp()), len(names)))
    engine.dispose()
    return {
        "scheduler": "flowyml-sched",
        "mode": mode,
        "backend": backend,
        "processes": processes,
        "claim": common.summarise(claim_reps),
        "pipeline_start": common.summarise(start_reps),
    }


def _apscheduler(opt: common.Options, url: str, backend: str, size: dict) -> dict:
    args = [
        "lateness", "--url", url, "--idle", str(size["stored"] - size["due"]), "--due", str(size["due"]),
        "--window", str(size["window_s"]), "--margin", str(size["margin_s"]), "--reps", str(opt.reps()),
    ]  # fmt: skip
    timeout = 300 + opt.reps() * (size["margin_s"] + size["window_s"] + 60)
    result = common.run_aps(args, opt.workdir, timeout)
    reps = [common.rep_stats(r["lateness_s"], r["expected"]) for r in result["rounds"]]
    return {
        "scheduler": "APScheduler",
        "mode": "thread pool",
        "backend": backend,
        "processes": 1,
        "job_start": common.summarise(reps),
    }


def run(opt: common.Options) -> dict[str, Any]:
    size = _sizes(opt)
    configs = []
    notes = []
    for backend, url in opt.backends(NAME):
        names = common.populate(url, size["stored"] - size["due"], size["due"], due_pipeline=common.RECORDING_PIPELINE)
        if backend == "sqlite" or not opt.quick:  # the smoke test: the default modes on SQLite only
            slow = common.populate(url, 0, size["due"], due_pipeline=SLOW_PIPELINE, due_prefix="slow-")
            configs.append(_ours(opt, url, backend, 1, names, size, "default"))
            configs.append(_ours(opt, url, backend, 1, slow, size, "default, 1 s import", "slow-"))
        if opt.apscheduler:  # in the same run, between ours
            configs.append(_apscheduler(opt, url, backend, size))
        for processes in size["processes"]:
            configs.append(_ours(opt, url, backend, processes, names, size))
    if not opt.apscheduler:
        notes.append(f"APScheduler skipped: {opt.aps_note}")
    if not opt.pg_url:
        notes.append(f"PostgreSQL skipped: {opt.pg_note}")
    return {
        "params": size | {"repetitions": opt.reps(), "worker_args": opt.worker_args},
        "configs": configs,
        "notes": notes,
    }


def markdown(report: dict[str, Any]) -> str:
    p = report["params"]
    lines = [
        f"{p['stored']:,} schedules stored, {p['due']} of them due spread evenly over {p['window_s']:g} s; "
        f"median of {p['repetitions']} repetitions (min-max). The point measured: ours, the pipeline's "
        "first line (`bench_jobs.record_start`'s `time.time()`), in the default mode (a child "
        "process forked from a warm template) and `--in-process`; the last column, the run row's "
        "`started_at` (the worker's start, as history records it); APScheduler, the job "
        "function's first line. All of it after the durable claim.",
        "",
        "| scheduler | mode | database | processes | first line p50 | first line p99 | first line max | "
        "row's start p99 |",
        "|---|---|---|---:|---|---|---|---|",
    ]
    for c in report["configs"]:
        fig = c.get("pipeline_start") or c["job_start"]
        cells = [fmt(fig, k) for k in ("p50_s", "p99_s", "max_s")]
        row = fmt(c["claim"], "p99_s") if "claim" in c else "-"
        incomplete = f" ({fig['incomplete_reps']} reps incomplete)" if fig.get("incomplete_reps") else ""
        lines.append(
            f"| {c['scheduler']}{incomplete} | {c.get('mode', 'in-process')} | {c['backend']} | {c['processes']} "
            f"| {' | '.join(cells)} | {row} |"
        )
    lines += [f"\n{note}" for note in report.get("notes", [])]
    return "\n".join(lines)


def fmt(fig: dict, key: str) -> str:
    return common.fmt_ms(fig[key]) if key in fig else "n/a"


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    configs = report["configs"]
    aps = next((c for c in configs if c["scheduler"] == "APScheduler" and c["backend"] == "sqlite"), None)
    found = []
    for c in configs:
        if c["scheduler"] != "flowyml-sched" or c["backend"] != "sqlite":
            continue
        mode = c.get("mode", "in-process")
        text = (
            f"p99 lateness of the pipeline's first line, {mode} mode, SQLite, "
            f"{report['params']['stored']:,} schedules, {c['processes']} worker "
            f"process{'es' if c['processes'] > 1 else ''}: ours <= APScheduler's"
        )
        ours = c["pipeline_start"].get("p99_s")
        if mode.startswith("default") and ours is not None:
            found.append(
                common.target(
                    f"p99 lateness of the pipeline's first line, {mode} mode, SQLite: under 5 ms",
                    fmt(c["pipeline_start"], "p99_s"),
                    ours["median"] < 0.005,
                )
            )
        if aps is None or ours is None or "p99_s" not in aps["job_start"]:
            found.append(common.target(text, fmt(c["pipeline_start"], "p99_s"), None, "APScheduler not measured"))
            continue
        theirs = aps["job_start"]["p99_s"]
        measured = f"{ours['median'] * 1e3:.1f} ms vs {theirs['median'] * 1e3:.1f} ms"
        if "p99_s" in c["claim"]:
            measured += f" (the run row's started_at: {c['claim']['p99_s']['median'] * 1e3:.1f} ms)"
        found.append(common.target(text, measured, ours["median"] <= theirs["median"]))
    return found
