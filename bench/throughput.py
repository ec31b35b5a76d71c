"""4. Throughput: fires per second through claim -> run -> record.

``fires`` interval schedules of a no-op pipeline (``bench_jobs:noop``) are all made due at
one instant while 1 or 4 ``flowyml-sched run-worker --in-process`` processes (default
``--max-concurrent 4``) are serving; the rate is ``fires`` divided by the time from the
first claim (earliest ``started_at``) to the last record (latest ``finished_at``).

Beside it, in the same repetition, the raw rate of the same database: single-row
``INSERT`` + ``COMMIT`` transactions through the driver itself (sqlite3 with the store's
settings: WAL, ``BEGIN IMMEDIATE``; psycopg 3), back to back for ``raw_s`` seconds. A fire
needs at least two commits (the claim and the record), so the yardstick is raw / 2 and the
target a quarter of it; issue 19's targets are half of raw itself (batches would make fewer
commits than fires) and under 0.2 ms of the workers' CPU per fire: the workers' utime + stime
(``/proc/<pid>/stat``, all threads) from arming to the last record, divided by the fires.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timezone
from typing import Any

import common
import sqlalchemy as sa

NAME = "throughput"
TITLE = "4. Throughput"
UTC = timezone.utc


def _sizes(opt: common.Options) -> dict[str, Any]:
    if opt.quick:
        return {"fires": 20, "raw_s": 0.2, "processes": [1, 2]}
    return {"fires": 1_000, "raw_s": 2.0, "processes": [1, 4]}


def raw_commit_rate(url: str, seconds: float) -> float:
    """Single-row insert-and-commit transactions per second, through the database driver."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(parsed.database, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_raw (id INTEGER PRIMARY KEY, v TEXT)")

        def one() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO bench_raw (v) VALUES (?)", ("x",))
            conn.execute("COMMIT")

    else:
        import psycopg

        conn = psycopg.connect(
            host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password,
            dbname=parsed.database, options=parsed.query.get("options"),
        )  # fmt: skip
        conn.execute("CREATE TABLE IF NOT EXISTS bench_raw (id BIGSERIAL PRIMARY KEY, v TEXT)")
        conn.commit()

        def one() -> None:
            conn.execute("INSERT INTO bench_raw (v) VALUES (%s)", ("x",))
            conn.commit()

    try:
        for _ in range(20):
            one()
        count = 0
        began = time.perf_counter()
        deadline = began + seconds
        while time.perf_counter() < deadline:
            one()
            count += 1
        return count / (time.perf_counter() - began)
    finally:
        conn.close()


def _config(opt: common.Options, url: str, backend: str, processes: int, names: list[str], size: dict) -> dict:
    workdir = opt.workdir / f"{NAME}-{backend}-{processes}"
    engine = common.write_engine(url)
    rates, raws, cpu, incomplete = [], [], [], 0
    with common.Workers(url, processes, workdir, args=opt.worker_args) as workers:
        workers.wait_alive(engine)
        for _ in range(opt.reps()):
            raws.append(raw_commit_rate(url, size["raw_s"]))
            cpu_before = sum(common.cpu_seconds(pid) for pid in workers.pids)
            at = datetime.now(UTC)
            common.arm(engine, names, [at] * len(names))
            done = common.wait_finished(engine, "tp-", at, len(names), 120 + len(names) / 2)
            cpu.append((sum(common.cpu_seconds(pid) for pid in workers.pids) - cpu_before) / len(names))
            incomplete += done < len(names)
            rows = [r for r in common.run_rows(engine, "tp-", at) if r.started_at and r.finished_at]
            span = (max(r.finished_at for r in rows) - min(r.started_at for r in rows)).total_seconds()
            rates.append(len(rows) / span)
    engine.dispose()
    fires, raw = common.summary(rates, 2), common.summary(raws, 1)
    return {
        "backend": backend,
        "processes": processes,
        "fires_per_s": fires,
        "raw_commits_per_s": raw,
        "ratio_to_half_raw": round(fires["median"] / (raw["median"] / 2), 4),
        "cpu_per_fire_s": common.summary(cpu, 6),
        "incomplete_reps": incomplete,
    }


def run(opt: common.Options) -> dict[str, Any]:
    size = _sizes(opt)
    configs = []
    for backend, url in opt.backends(NAME):
        names = common.populate(url, 0, size["fires"], due_pipeline=common.NOOP_PIPELINE, due_prefix="tp-")
        for processes in size["processes"]:
            configs.append(_config(opt, url, backend, processes, names, size))
    notes = [] if opt.pg_url else [f"PostgreSQL skipped: {opt.pg_note}"]
    return {
        "params": size | {"repetitions": opt.reps(), "max_concurrent": 4, "worker_args": opt.worker_args},
        "configs": configs,
        "notes": notes,
    }


def markdown(report: dict[str, Any]) -> str:
    p = report["params"]
    lines = [
        f"{p['fires']:,} fire times due at once, no-op pipeline in the worker process (`--in-process`, "
        f"`--max-concurrent {p['max_concurrent']}` per worker); raw = single-row insert+commit transactions "
        f"through the driver for {p['raw_s']:g} s in the same repetition. Median of {p['repetitions']} (min-max).",
        "",
        "| database | worker processes | fires/s | raw commits/s | fires / (raw / 2) | fires / raw "
        "| workers' CPU per fire |",
        "|---|---:|---|---|---:|---:|---|",
    ]
    for c in report["configs"]:
        cpu = common.fmt_ms(c["cpu_per_fire_s"], digits=2) if "cpu_per_fire_s" in c else "not measured"
        lines.append(
            f"| {c['backend']} | {c['processes']} | {common.fmt_stats(c['fires_per_s'], digits=1)} "
            f"| {common.fmt_stats(c['raw_commits_per_s'], digits=0)} | {c['ratio_to_half_raw']:.1%} "
            f"| {c['ratio_to_half_raw'] / 2:.1%} | {cpu} |"
        )
    lines += [f"\n{note}" for note in report.get("notes", [])]
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for c in report["configs"]:
        workers = f"{c['processes']} worker{'s' if c['processes'] > 1 else ''}"
        found.append(
            common.target(
                f"throughput >= 25% of raw commit rate / 2 ({c['backend']}, {workers})",
                f"{c['fires_per_s']['median']:.1f} fires/s = {c['ratio_to_half_raw']:.1%} of "
                f"{c['raw_commits_per_s']['median'] / 2:.0f}",
                c["ratio_to_half_raw"] >= 0.25,
            )
        )
        if c["processes"] == 1 and "cpu_per_fire_s" in c:
            found += [
                common.target(
                    f"throughput >= 50% of the raw commit rate ({c['backend']}, 1 worker; issue 19)",
                    f"{c['ratio_to_half_raw'] / 2:.1%}",
                    c["ratio_to_half_raw"] / 2 >= 0.5,
                ),
                common.target(
                    f"the worker's CPU per fire < 0.2 ms ({c['backend']}, 1 worker; issue 19)",
                    f"{c['cpu_per_fire_s']['median'] * 1e3:.2f} ms",
                    c["cpu_per_fire_s"]["median"] < 0.0002,
                ),
            ]
    return found
