"""7. Memory: the worker's peak resident set with many schedules stored.

A fresh ``flowyml-sched run-worker --in-process`` on a SQLite store of 100,000 schedules
(none due; and of 100 for comparison) serves for ``settle_s`` (its first rounds, which
read the store, and a heartbeat), then its ``VmHWM`` (peak RSS) and ``VmRSS`` are read
from ``/proc/<pid>/status``. Each repetition is a new process.
"""

from __future__ import annotations

import time
from typing import Any

import common

NAME = "memory"
TITLE = "7. Memory"


def _sizes(opt: common.Options) -> dict[str, Any]:
    if opt.quick:
        return {"counts": [10, 1_000], "settle_s": 0.3}
    return {"counts": [100, 100_000], "settle_s": 3.5}


def run(opt: common.Options) -> dict[str, Any]:
    size = _sizes(opt)
    results = []
    for count in size["counts"]:
        url = common.sqlite_url(opt.workdir / NAME / f"store-{count}.db")
        common.populate(url, count)
        engine = common.write_engine(url)
        hwm, rss = [], []
        for rep in range(opt.reps()):
            with common.Workers(url, 1, opt.workdir / NAME / f"{count}-{rep}") as workers:
                workers.wait_alive(engine)
                time.sleep(size["settle_s"])
                status = common.vm_status(workers.pids[0])
            hwm.append(status["VmHWM"] / 1024)
            rss.append(status["VmRSS"] / 1024)
        engine.dispose()
        results.append({"stored": count, "vm_hwm_mib": common.summary(hwm, 1), "vm_rss_mib": common.summary(rss, 1)})
    return {"params": size | {"repetitions": opt.reps()}, "results": results}


def markdown(report: dict[str, Any]) -> str:
    p = report["params"]
    lines = [
        f"A fresh worker process (SQLite), read after {p['settle_s']:g} s of serving idle; median of "
        f"{p['repetitions']} processes (min-max).",
        "",
        "| schedules stored | peak RSS (VmHWM) | RSS (VmRSS) |",
        "|---:|---|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['stored']:,} | {common.fmt_stats(r['vm_hwm_mib'], 'MiB', digits=1)} "
            f"| {common.fmt_stats(r['vm_rss_mib'], 'MiB', digits=1)} |"
        )
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    largest = report["results"][-1]
    hwm = largest["vm_hwm_mib"]["median"]
    return [
        common.target(
            f"worker peak RSS < 100 MB with {largest['stored']:,} schedules",
            f"{hwm:.1f} MiB ({hwm * 1.048576:.1f} MB)",
            hwm * 1.048576 < 100,
        )
    ]
