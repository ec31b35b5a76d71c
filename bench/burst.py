"""11. A burst: many fire times due at one instant (``0 0 * * *`` on many schedules at midnight).

The store holds ``stored`` schedules; ``due`` of them are made due at the same instant,
``margin`` seconds after they are armed. Measured from that instant: the last run row's
``started_at`` (the worker's start, as history records it), and the median and the last
start of the pipeline's first line (``bench_jobs.record_start``), for 1 and 4 worker
processes in the default mode (each run a child process forked from the warm template) and
``--in-process``; ``--max-concurrent`` is the default, 4 runs at a time per worker. Beside
it, APScheduler 3.x (thread pool, SQLAlchemy job store on the same database) with the same
jobs due at one instant. Then the memory of a warm template and of a run forked from it
(``/proc/<pid>/smaps_rollup``), for the recording pipeline and the flowyml example pipeline.
The CPU time per run of the workers and of the templates with their runs (``/proc``) says
where a burst's time goes on two cores.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import common

from flowyml_sched.executor import ChildRun, RunRequest

NAME = "burst"
TITLE = "11. A burst: fire times due at one instant"
UTC = timezone.utc
WAIT_SECONDS = 2.0
"""How long the CPU time of a prepared run is watched while it waits for its release."""
MEMORY_PIPELINES = {"recording pipeline": common.RECORDING_PIPELINE, "flowyml example": "flowyml_demo"}


def _sizes(opt: common.Options) -> dict[str, Any]:
    if opt.quick:
        return {"stored": 200, "due": 20, "margin_s": 0.6, "processes": [1], "wait_s": 0.3}
    return {"stored": 10_000, "due": 1_000, "margin_s": 3.0, "processes": [1, 4], "wait_s": WAIT_SECONDS}


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _summarise(reps: list[dict[str, Any]], expected: int) -> dict[str, Any]:
    complete = [r for r in reps if r["count"] == expected]
    out: dict[str, Any] = {"reps": reps, "incomplete_reps": len(reps) - len(complete)}
    for key in ("row_last_s", "start_median_s", "start_last_s"):
        if complete and all(key in r for r in complete):
            out[key] = common.summary([r[key] for r in complete])
    for part in ("worker", "templates_and_runs"):
        values = [r["cpu_ms_per_run"][part] for r in complete if part in r.get("cpu_ms_per_run", {})]
        if values:
            out[f"cpu_ms_per_run_{part}"] = common.summary(values)
    return out


def _ours(opt: common.Options, url: str, backend: str, processes: int, names: list[str], size: dict, mode: str) -> dict:
    workdir = opt.workdir / f"burst-{backend}-{processes}-{mode}"
    record = workdir / "record.txt"
    engine = common.write_engine(url)
    reps = []
    with common.Workers(
        url,
        processes,
        workdir,
        args=opt.worker_args,
        env={"BENCH_RECORD": str(record)},
        in_process=mode == "in-process",
    ) as workers:
        workers.wait_alive(engine)
        for _ in range(opt.reps()):
            instant = datetime.now(UTC) + timedelta(seconds=size["margin_s"])
            cpu_before = _cpu_split(workers.pids)
            common.arm(engine, names, [instant] * len(names))
            common.wait_finished(engine, "due-", instant, len(names), size["margin_s"] + 600)
            cpu_after = _cpu_split(workers.pids)
            rows = common.run_rows(engine, "due-", instant)
            starts = common.read_record(record, instant.timestamp())
            row_starts = [(r.started_at - instant).total_seconds() for r in rows if r.started_at is not None]
            rep: dict[str, Any] = {"count": len(starts), "missed": sum(r.status == "missed" for r in rows)}
            if row_starts:
                rep["row_last_s"] = max(row_starts)
            if starts:
                rep |= {"start_median_s": statistics.median(starts), "start_last_s": max(starts)}
            rep["cpu_ms_per_run"] = {
                part: round((cpu_after[part] - cpu_before.get(part, 0.0)) * 1e3 / len(names), 3) for part in cpu_after
            }
            reps.append(rep)
    engine.dispose()
    return {
        "scheduler": "flowyml-sched",
        "mode": mode,
        "backend": backend,
        "processes": processes,
        "burst": _summarise(reps, len(names)),
    }


def _apscheduler(opt: common.Options, url: str, backend: str, size: dict) -> dict:
    args = [
        "lateness", "--url", url, "--idle", str(size["stored"] - size["due"]), "--due", str(size["due"]),
        "--window", "0", "--margin", str(size["margin_s"]), "--reps", str(opt.reps()),
    ]  # fmt: skip
    result = common.run_aps(args, opt.workdir, 300 + opt.reps() * (size["margin_s"] + 600))
    reps = []
    for r in result["rounds"]:
        late = r["lateness_s"]
        reps.append(
            {"count": len(late)}
            | ({"start_median_s": statistics.median(late), "start_last_s": max(late)} if late else {})
        )
    return {
        "scheduler": "APScheduler",
        "mode": "thread pool",
        "backend": backend,
        "processes": 1,
        "burst": _summarise(reps, size["due"]),
    }


def _cpu_split(worker_pids: list[int]) -> dict[str, float]:
    """CPU seconds so far of the workers (their own), and of their templates with the runs
    they forked and reaped: the live templates' own and reaped children's, plus the workers'
    reaped children (templates that were replaced, with their runs; cold runs), from
    ``/proc/<pid>/stat``."""
    ticks = os.sysconf("SC_CLK_TCK")
    split = {"worker": 0.0, "templates_and_runs": 0.0}
    for pid in worker_pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        split["worker"] += (int(fields[11]) + int(fields[12])) / ticks
        split["templates_and_runs"] += (int(fields[13]) + int(fields[14])) / ticks
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                try:
                    if b"--template" not in Path(f"/proc/{child}/cmdline").read_bytes():
                        continue
                    fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                split["templates_and_runs"] += sum(int(f) for f in fields[11:15]) / ticks
    return split


def _rollup(pid: int) -> dict[str, int]:
    """KiB figures of ``/proc/<pid>/smaps_rollup``: Rss, Pss, and the private (unshared) pages."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            fields[key] = int(value.split()[0])
    return {
        "rss_kib": fields["Rss"],
        "pss_kib": fields["Pss"],
        "private_kib": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
    }


def _template_memory(opt: common.Options, wait: float) -> list[dict[str, Any]]:
    """The template's memory and a prepared run's (forked, resolved, waiting) for each of
    :data:`MEMORY_PIPELINES`; the run is cancelled after the reading."""
    from flowyml_sched.warm import Templates

    saved = dict(os.environ)
    os.environ.update(common.child_env(opt.workdir))
    templates = Templates()
    found = []
    try:
        for label, pipeline in MEMORY_PIPELINES.items():
            request = RunRequest(pipeline, {}, datetime.now(UTC) + timedelta(hours=1), f"memory-{label}")
            templates.start(pipeline)
            run = ChildRun(request, opt.workdir / "memory" / f"{pipeline.replace(':', '-')}.log").prepare(templates)
            if run.pid is None:
                found.append({"pipeline": label, "error": "no template could be started for it"})
                continue
            time.sleep(wait)  # prepared: resolved and waiting for its release
            waiting_from = common.cpu_ns(run.pid)
            time.sleep(wait)
            waiting_cpu = common.cpu_ns(run.pid) - waiting_from
            template, child = _rollup(_parent(run.pid)), _rollup(run.pid)
            run.cancel()
            found.append(
                {
                    "pipeline": label,
                    "template": template,
                    "run": child,
                    "shared_fraction": round(1 - child["private_kib"] / child["rss_kib"], 3),
                    "waiting_cpu_ns": waiting_cpu,
                }
            )
    finally:
        templates.close()
        os.environ.clear()
        os.environ.update(saved)
    return found


def run(opt: common.Options) -> dict[str, Any]:
    size = _sizes(opt)
    configs = []
    notes = []
    for backend, url in opt.backends(NAME):
        if opt.quick and backend != "sqlite":  # the smoke test: SQLite is enough
            continue
        names = common.populate(url, size["stored"] - size["due"], size["due"], due_pipeline=common.RECORDING_PIPELINE)
        for processes in size["processes"]:
            for mode in ("default", "in-process"):
                configs.append(_ours(opt, url, backend, processes, names, size, mode))
        if opt.apscheduler:
            configs.append(_apscheduler(opt, url, backend, size))
    if not opt.apscheduler:
        notes.append(f"APScheduler skipped: {opt.aps_note}")
    if not opt.pg_url:
        notes.append(f"PostgreSQL skipped: {opt.pg_note}")
    return {
        "params": size | {"repetitions": opt.reps(), "worker_args": opt.worker_args, "max_concurrent": 4},
        "configs": configs,
        "memory": _template_memory(opt, size["wait_s"]),
        "notes": notes,
    }


def _seconds(fig: dict[str, Any], key: str) -> str:
    if key not in fig:
        return "n/a"
    s = fig[key]
    return f"{s['median']:.2f} s ({s['min']:.2f}-{s['max']:.2f})"


def markdown(report: dict[str, Any]) -> str:
    p = report["params"]
    lines = [
        f"{p['stored']:,} schedules stored, {p['due']:,} of them due at one instant; seconds from that "
        f"instant, median of {p['repetitions']} repetitions (min-max). The last run row's `started_at` "
        "(the worker's start, as history records it), and the median and the last start of the "
        "pipeline's first line (APScheduler: the job function's). Each worker runs "
        f"`--max-concurrent` {p['max_concurrent']} (the default) at a time: the runs of a burst go "
        "through that many slots per worker, so the burst's length is about the due runs / "
        "(workers x max-concurrent) x one run's cost (claim, start, record).",
        "",
        "| scheduler | mode | database | workers | last row start | median first line | last first line | "
        "CPU a run: workers / templates and runs |",
        "|---|---|---|---:|---|---|---|---|",
    ]
    for c in report["configs"]:
        fig = c["burst"]
        incomplete = f" ({fig['incomplete_reps']} reps incomplete)" if fig.get("incomplete_reps") else ""
        cpu = " / ".join(
            f"{fig[f'cpu_ms_per_run_{part}']['median']:.2f}" for part in ("worker", "templates_and_runs")
            if f"cpu_ms_per_run_{part}" in fig
        )  # fmt: skip
        lines.append(
            f"| {c['scheduler']}{incomplete} | {c['mode']} | {c['backend']} | {c['processes']} | "
            f"{_seconds(fig, 'row_last_s')} | {_seconds(fig, 'start_median_s')} | {_seconds(fig, 'start_last_s')} | "
            f"{cpu + ' ms' if cpu else '-'} |"
        )
    lines += [
        "",
        "Memory of a warm template and of a run forked from it, prepared (resolved, waiting for its "
        "instant): RSS, the share of the run's RSS still shared with the template (copy-on-write), and "
        f"the CPU time the prepared run took while it waited {p.get('wait_s', WAIT_SECONDS):g} s.",
        "",
        "| pipeline | template RSS | template PSS | run RSS | run's own (private) | shared with the template | "
        "CPU while waiting |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in report.get("memory", []):
        if "error" in m:
            lines.append(f"| {m['pipeline']} | {m['error']} | | | | | |")
            continue
        t, r = m["template"], m["run"]
        lines.append(
            f"| {m['pipeline']} | {t['rss_kib'] / 1024:.1f} MiB | {t['pss_kib'] / 1024:.1f} MiB | "
            f"{r['rss_kib'] / 1024:.1f} MiB | {r['private_kib'] / 1024:.1f} MiB | {m['shared_fraction']:.0%} | "
            f"{m.get('waiting_cpu_ns', 0) / 1e6:.2f} ms |"
        )
    lines += [f"\n{note}" for note in report.get("notes", [])]
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    configs = report["configs"]
    found = []
    aps = next((c for c in configs if c["scheduler"] == "APScheduler" and c["backend"] == "sqlite"), None)
    for c in configs:
        if c["scheduler"] != "flowyml-sched" or c["backend"] != "sqlite" or c["mode"] != "default":
            continue
        if c["processes"] != max(r["processes"] for r in configs if r["scheduler"] == "flowyml-sched"):
            continue
        last = c["burst"].get("start_last_s")
        text = (
            f"a burst of {report['params']['due']:,} short runs, default mode, {c['processes']} workers, SQLite: "
            "the last pipeline starts within 5 s of the instant"
        )
        found.append(
            common.target(text, _seconds(c["burst"], "start_last_s"), None if last is None else last["median"] <= 5.0)
        )
        inproc = next(
            (r for r in configs if r["scheduler"] == "flowyml-sched" and r["backend"] == "sqlite"
             and r["mode"] == "in-process" and r["processes"] == c["processes"]),
            None,
        )  # fmt: skip
        if (
            aps is not None
            and inproc is not None
            and "start_last_s" in aps["burst"]
            and "start_last_s" in inproc["burst"]
        ):
            ours, theirs = inproc["burst"]["start_last_s"]["median"], aps["burst"]["start_last_s"]["median"]
            found.append(
                common.target(
                    f"the same burst in-process, {c['processes']} workers: last start at or below APScheduler's",
                    f"{ours:.2f} s vs {theirs:.2f} s",
                    ours <= theirs,
                )
            )
    return found
