"""1. Dispatch lateness: how late a due fire time is claimed and its pipeline started.

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


def _sizes(opt: common.Options) -> dict[str, Any]:
    if opt.quick:
        return {"stored": 100, "due": 10, "window_s": 0.3, "margin_s": 0.6, "processes": [1, 2]}
    return {"stored": 10_000, "due": 200, "window_s": 10.0, "margin_s": 2.5, "processes": [1, 4]}


def _ours(opt: common.Options, url: str, backend: str, processes: int, names: list[str], size: dict) -> dict:
    workdir = opt.workdir / f"lateness-{backend}-{processes}"
    record = workdir / "record.txt"
    engine = common.write_engine(url)
    claim_reps, start_reps = [], []
    with common.Workers(url, processes, workdir, args=opt.worker_args, env={"BENCH_RECORD": str(record)}) as workers:
        workers.wait_alive(engine)
        for _ in range(opt.reps()):
            base = datetime.now(UTC) + timedelta(seconds=size["margin_s"])
            step = size["window_s"] / len(names)
            instants = [base + timedelta(seconds=step * i) for i in range(len(names))]
            common.arm(engine, names, instants)
            common.wait_finished(engine, "due-", base, len(names), size["margin_s"] + size["window_s"] + 60)
            rows = common.run_rows(engine, "due-", base)
            claim = [(r.started_at - r.scheduled_for).total_seconds() for r in rows if r.started_at is not None]
            claim_reps.append(common.rep_stats(claim, len(names)) | {"missed": sum(r.status == "missed" for r in rows)})
            start_reps.append(common.rep_stats(common.read_record(record, base.timestamp()), len(names)))
    engine.dispose()
    return {
        "scheduler": "flowyml-sched",
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
    return {"scheduler": "APScheduler", "backend": backend, "processes": 1, "job_start": common.summarise(reps)}


def run(opt: common.Options) -> dict[str, Any]:
    size = _sizes(opt)
    configs = []
    notes = []
    for backend, url in opt.backends(NAME):
        names = common.populate(url, size["stored"] - size["due"], size["due"], due_pipeline=common.RECORDING_PIPELINE)
        for processes in size["processes"]:
            configs.append(_ours(opt, url, backend, processes, names, size))
        if opt.apscheduler:
            configs.append(_apscheduler(opt, url, backend, size))
    if not opt.apscheduler:
        notes.append(f"APScheduler skipped: {opt.aps_note}")
    if not opt.pg_url:
        notes.append(f"PostgreSQL skipped: {opt.pg_note}")
    return {
        "params": size | {"repetitions": opt.reps(), "worker_args": opt.worker_args},
        "configs": configs,
        "notes": notes,
    }


def _figure(config: dict) -> dict | None:
    return config.get("claim") or config.get("job_start")


def markdown(report: dict[str, Any]) -> str:
    p = report["params"]
    lines = [
        f"{p['stored']:,} schedules stored, {p['due']} of them due spread evenly over {p['window_s']:g} s; "
        f"median of {p['repetitions']} repetitions (min-max). p50/p99/max: ours, the lateness of the "
        "run's start as history records it (the run row's `started_at`); APScheduler, of the job "
        "function's start. The last column: ours at the pipeline's own start; both come after the durable claim.",
        "",
        "| scheduler | database | processes | p50 | p99 | max | pipeline start p99 (ours) |",
        "|---|---|---:|---|---|---|---|",
    ]
    for c in report["configs"]:
        fig = _figure(c)
        cells = [fmt(fig, k) for k in ("p50_s", "p99_s", "max_s")]
        start = fmt(c["pipeline_start"], "p99_s") if "pipeline_start" in c else "-"
        incomplete = f" ({fig['incomplete_reps']} reps incomplete)" if fig.get("incomplete_reps") else ""
        lines.append(
            f"| {c['scheduler']}{incomplete} | {c['backend']} | {c['processes']} | {' | '.join(cells)} | {start} |"
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
        text = (
            f"p99 dispatch lateness with the durable claim (at the pipeline's start), SQLite, "
            f"{report['params']['stored']:,} schedules, {c['processes']} worker "
            f"process{'es' if c['processes'] > 1 else ''}: ours <= APScheduler's"
        )
        ours = c["pipeline_start"].get("p99_s")
        if aps is None or ours is None or "p99_s" not in aps["job_start"]:
            found.append(common.target(text, fmt(c["pipeline_start"], "p99_s"), None, "APScheduler not measured"))
            continue
        theirs = aps["job_start"]["p99_s"]
        measured = f"{ours['median'] * 1e3:.1f} ms vs {theirs['median'] * 1e3:.1f} ms"
        if "p99_s" in c["claim"]:
            measured += f" (the run row's started_at: {c['claim']['p99_s']['median'] * 1e3:.1f} ms)"
        found.append(common.target(text, measured, ours["median"] <= theirs["median"]))
    return found
