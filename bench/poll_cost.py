"""2. Poll cost: one idle poll of the worker against the number of schedules stored.

One poll is what the worker's loop does each round when nothing is due, taken at its
dearest: ``Worker.tick(now)`` (its maintenance and its change watch; nothing is claimed)
plus ``store.next_due_at()``, the indexed read a round makes when the watch reports that
the schedules changed (a round that sees no change skips it). Measured in this process on a store of
100, 10,000 and 100,000 schedules that are not due for months; a repetition is the mean of
a batch of polls, after a few polls of warm-up (the first round also heartbeats and prunes
history). It must not grow with the count: the figure to watch is the ratio 100k / 100.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import common

from flowyml_sched.locks import FileLocks
from flowyml_sched.store import open_store
from flowyml_sched.worker import Worker, WorkerSettings

NAME = "poll_cost"
TITLE = "2. Poll cost"
UTC = timezone.utc


def _sizes(opt: common.Options) -> tuple[list[int], int]:
    return ([10, 100, 1_000], 10) if opt.quick else ([100, 10_000, 100_000], 100)


def measure(url: str, workdir, reps: int, batch: int) -> dict[str, Any]:
    store = open_store(url)
    try:
        worker = Worker(store, FileLocks(workdir / "locks"), WorkerSettings(log_dir=workdir / "logs"))

        def poll() -> None:
            claims = worker.tick(datetime.now(UTC))
            assert not claims, "nothing may be due in the poll-cost store"
            store.next_due_at()

        for _ in range(5):
            poll()
        samples = []
        for _ in range(reps):
            began = time.perf_counter()
            for _ in range(batch):
                poll()
            samples.append((time.perf_counter() - began) / batch)
    finally:
        store.close()
    return common.summary(samples, digits=7)


def run(opt: common.Options) -> dict[str, Any]:
    counts, batch = _sizes(opt)
    results = []
    for backend, base_url in opt.backends(NAME):
        for count in counts:
            if backend == "sqlite":
                url = common.sqlite_url(opt.workdir / NAME / f"store-{count}.db")
            else:
                url = base_url
                with open_store(url) as store:
                    store.clear(datetime.now(timezone.utc))
            common.populate(url, count)
            workdir = opt.workdir / NAME / f"{backend}-{count}"
            results.append({"backend": backend, "stored": count, "poll_s": measure(url, workdir, opt.reps(), batch)})
    notes = [] if opt.pg_url else [f"PostgreSQL skipped: {opt.pg_note}"]
    return {
        "params": {"counts": counts, "polls_per_repetition": batch, "repetitions": opt.reps()},
        "results": results,
        "notes": notes,
    }


def _ratios(report: dict[str, Any]) -> dict[str, float]:
    by = {(r["backend"], r["stored"]): r["poll_s"]["median"] for r in report["results"]}
    low, high = report["params"]["counts"][0], report["params"]["counts"][-1]
    return {b: by[(b, high)] / by[(b, low)] for b in ("sqlite", "postgresql") if (b, low) in by and (b, high) in by}


def markdown(report: dict[str, Any]) -> str:
    p = report["params"]
    counts = p["counts"]
    lines = [
        f"One idle poll (`Worker.tick(now)` with nothing due + `next_due_at()`), mean of {p['polls_per_repetition']} "
        f"polls per repetition; median of {p['repetitions']} repetitions (min-max).",
        "",
        "| database | " + " | ".join(f"{c:,} schedules" for c in counts) + f" | {counts[-1]:,} / {counts[0]:,} |",
        "|---|" + "---|" * len(counts) + "---:|",
    ]
    ratios = _ratios(report)
    for backend in ("sqlite", "postgresql"):
        rows = {r["stored"]: r for r in report["results"] if r["backend"] == backend}
        if not rows:
            continue
        cells = [common.fmt_ms(rows[c]["poll_s"], digits=2) if c in rows else "-" for c in counts]
        lines.append(f"| {backend} | {' | '.join(cells)} | {ratios.get(backend, float('nan')):.2f} |")
    lines += [f"\n{note}" for note in report.get("notes", [])]
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    counts = report["params"]["counts"]
    found = []
    for backend, ratio in _ratios(report).items():
        found.append(
            common.target(
                f"idle poll cost at {counts[-1]:,} schedules <= 2x that at {counts[0]:,} ({backend})",
                f"ratio {ratio:.2f}",
                ratio <= 2.0,
            )
        )
    return found
