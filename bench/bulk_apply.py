"""8. Bulk apply: ``flowyml-sched apply`` of a generated schedules file into an empty store.

The file holds ``count`` cron schedules (``M H * * *`` in Europe/Berlin, a no-op pipeline);
each repetition applies it with the CLI, a fresh process, to a new SQLite file whose schema
was created beforehand (untimed), with the default pipeline check. Beside it, APScheduler:
``add_job`` of the same cron triggers, one by one, into a ``SQLAlchemyJobStore`` on a new
SQLite file, the scheduler started paused (``bench/apscheduler_side.py add``; the add loop is
timed, and the whole process too).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import common
import sqlalchemy as sa

from flowyml_sched.store.schema import schedules

NAME = "bulk_apply"
TITLE = "8. Bulk apply"
ZONE = "Europe/Berlin"


def _sizes(opt: common.Options) -> list[int]:
    return [10, 50] if opt.quick else [1_000, 10_000]


def specs(count: int) -> list[tuple[str, str, str]]:
    return [(f"job-{i:05d}", f"{i % 60} {(i // 60) % 24} * * *", ZONE) for i in range(count)]


def yaml_text(count: int) -> str:
    lines = ["version: 1", "defaults:", f"  timezone: {ZONE}", "schedules:"]
    for name, cron, _ in specs(count):
        lines += [f"  - name: {name}", f"    pipeline: {common.NOOP_PIPELINE}", f'    cron: "{cron}"']
    return "\n".join(lines) + "\n"


def _stored(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(schedules)).scalar_one()
    finally:
        engine.dispose()


def run(opt: common.Options) -> dict[str, Any]:
    workdir = opt.workdir / NAME
    empty = common.empty_sqlite_store(workdir)
    env = common.child_env(opt.workdir)
    results = []
    for count in _sizes(opt):
        spec_file = workdir / f"schedules-{count}.yaml"
        spec_file.write_text(yaml_text(count))
        specs_json = workdir / f"specs-{count}.json"
        specs_json.write_text(json.dumps(specs(count)))
        ours, theirs, theirs_process = [], [], []
        for rep in range(opt.reps()):
            db = workdir / f"ours-{count}-{rep}.db"
            shutil.copy(empty, db)
            url = common.sqlite_url(db)
            began = time.perf_counter()
            done = subprocess.run(
                [common.cli(), "apply", str(spec_file), "--db-url", url],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=1800,
            )  # fmt: skip
            ours.append(time.perf_counter() - began)
            if done.returncode != 0:
                raise RuntimeError(f"flowyml-sched apply failed: {done.stderr.decode()[-2000:]}")
            if (stored := _stored(url)) != count:
                raise RuntimeError(f"flowyml-sched apply stored {stored} of {count} schedules")
            if opt.apscheduler:
                aps_url = common.sqlite_url(workdir / f"aps-{count}-{rep}.db")
                began = time.perf_counter()
                result = common.run_aps(["add", "--url", aps_url, "--specs", str(specs_json)], opt.workdir, 3600)
                theirs_process.append(time.perf_counter() - began)
                theirs.append(result["seconds"])
                if result["stored"] != count:
                    raise RuntimeError(f"APScheduler stored {result['stored']} of {count} jobs")
        entry: dict[str, Any] = {"count": count, "ours_s": common.summary(ours, 4)}
        if theirs:
            entry["apscheduler_add_job_s"] = common.summary(theirs, 4)
            entry["apscheduler_process_s"] = common.summary(theirs_process, 4)
        results.append(entry)
        for path in workdir.glob(f"*-{count}-*.db*"):
            Path(path).unlink()
    notes = [] if opt.apscheduler else [f"APScheduler skipped: {opt.aps_note}"]
    return {
        "params": {"counts": _sizes(opt), "repetitions": opt.reps(), "zone": ZONE},
        "results": results,
        "notes": notes,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Seconds to store a generated file of cron schedules into an empty SQLite store; median of "
        f"{report['params']['repetitions']} (min-max). Ours: the whole `flowyml-sched apply` process. "
        "APScheduler: the `add_job` loop (and its whole process).",
        "",
        "| schedules | `flowyml-sched apply` | APScheduler `add_job` loop | APScheduler process |",
        "|---:|---|---|---|",
    ]
    for r in report["results"]:
        aps = common.fmt_stats(r["apscheduler_add_job_s"], "s") if "apscheduler_add_job_s" in r else "not measured"
        proc = common.fmt_stats(r["apscheduler_process_s"], "s") if "apscheduler_process_s" in r else "-"
        lines.append(f"| {r['count']:,} | {common.fmt_stats(r['ours_s'], 's')} | {aps} | {proc} |")
    lines += [f"\n{note}" for note in report.get("notes", [])]
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    return []
