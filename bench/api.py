"""9. REST API and ``/metrics``: a real ``flowyml-sched serve`` process on loopback.

``GET /api/schedules`` with 1,000 and 10,000 schedules stored: a load client of
:data:`CLIENTS` threads, each with its own keep-alive connection, sends requests for a
bounded window; requests per second and the latency of each (p50, p99), per window.

``GET /metrics`` with 10,000 schedules and 1,000,000 history rows (100 a schedule, 94 %
succeeded, 3 % failed, 2 % skipped, 1 % missed): the first scrape after the server started
(it reads the runs going and the schedules, and writes every schedule's lines), then one scraper (as Prometheus) scraping
back to back for a window while a writer records :data:`ENDS_PER_SECOND` run ends a second
(so most scrapes find schedules whose lines must be written again); the latency of each
scrape, p50, p99 and max per window. SQLite and PostgreSQL.
"""

from __future__ import annotations

import http.client
import multiprocessing
import random
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import common
import sqlalchemy as sa

from flowyml_sched.store.schema import runs

NAME = "api"
TITLE = "9. REST API and /metrics"
UTC = timezone.utc
TOKEN = "bench-admin-token"
CLIENTS = 4
ENDS_PER_SECOND = 50
STATUSES = ["succeeded"] * 94 + ["failed"] * 3 + ["skipped"] * 2 + ["missed"]


def _sizes(opt: common.Options) -> dict[str, Any]:
    if opt.quick:
        return {"list_counts": [50], "metrics_schedules": 100, "runs_per_schedule": 10, "window_s": 0.5}
    return {"list_counts": [1_000, 10_000], "metrics_schedules": 10_000, "runs_per_schedule": 100, "window_s": 5.0}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Server:
    """``flowyml-sched serve`` on a free loopback port, with an admin token."""

    def __init__(self, opt: common.Options, url: str, label: str):
        self.port = _free_port()
        self.log = opt.workdir / NAME / f"serve-{label}.log"
        env = common.child_env(opt.workdir, FLOWYML_SCHEDULER_API_TOKEN=TOKEN)
        self.proc = common.spawn([common.cli(), "serve", "--port", str(self.port), "--db-url", url], self.log, env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"flowyml-sched serve exited: {common.log_tail(self.log)}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"flowyml-sched serve did not listen within 60 s: {common.log_tail(self.log)}")

    def get(self, conn: http.client.HTTPConnection, path: str) -> float:
        """Seconds for one GET of ``path`` on ``conn`` (the body read whole); raises on a non-200."""
        began = time.perf_counter()
        conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"GET {path}: {answer.status}")
        return time.perf_counter() - began

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def stop(self) -> None:
        common.stop(self.proc)


def _load(server: _Server, path: str, clients: int, window: float) -> dict[str, Any]:
    """``clients`` threads sending GETs of ``path`` for ``window`` seconds."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    deadline = time.perf_counter() + window

    def client(mine: list[float]) -> None:
        conn = server.connection()
        try:
            while time.perf_counter() < deadline:
                mine.append(server.get(conn, path))
        except BaseException as exc:  # reported below, the window's figures are then void
            errors.append(exc)
        finally:
            conn.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=client, args=(mine,)) for mine in latencies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"the load client failed: {errors[0]!r}")
    every = [value for mine in latencies for value in mine]
    return {
        "requests_per_s": len(every) / elapsed,
        "p50_s": common.percentile(every, 0.5),
        "p99_s": common.percentile(every, 0.99),
        "max_s": max(every),
    }


def _fill_history(url: str, names: list[str], per_schedule: int) -> None:
    """``per_schedule`` ended runs of each of ``names``, hourly fire times before now."""
    rng = random.Random(1)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    engine = common.write_engine(url)
    try:
        with engine.begin() as conn:
            rows: list[dict[str, Any]] = []
            for hour in range(per_schedule, 0, -1):
                at = now - timedelta(hours=hour)
                for name in names:
                    status = rng.choice(STATUSES)
                    started = at + timedelta(seconds=rng.random()) if status in ("succeeded", "failed") else None
                    took = rng.uniform(0.1, 30.0) if started else None
                    rows.append(
                        {
                            "schedule_name": name,
                            "scheduled_for": at,
                            "status": status,
                            "attempt": 1,
                            "started_at": started,
                            "finished_at": (started or at) + timedelta(seconds=took or 0),
                            "duration_seconds": took,
                            "origin": "schedule",
                        }
                    )
                if len(rows) >= 20_000:
                    conn.execute(sa.insert(runs), rows)
                    rows = []
            if rows:
                conn.execute(sa.insert(runs), rows)
        if engine.dialect.name == "postgresql":  # as autovacuum would, before the API reads them
            with engine.begin() as conn:
                conn.execute(sa.text("ANALYZE runs"))
    finally:
        engine.dispose()


def _write_ends(url: str, names: list[str], ready: Any, halt: Any, written: Any) -> None:
    """Record ``ENDS_PER_SECOND`` run ends a second (10 every 0.2 s, of random schedules)
    until ``halt`` is set, once ``ready`` is; ``written`` counts them. Runs in a process of
    its own, as a worker."""
    rng = random.Random(2)
    engine = common.write_engine(url)
    ready.set()
    try:
        while not halt.wait(10 / ENDS_PER_SECOND):
            now = datetime.now(UTC)
            rows = [
                {
                    "schedule_name": rng.choice(names),
                    "scheduled_for": now + timedelta(microseconds=offset),
                    "status": "succeeded",
                    "attempt": 1,
                    "started_at": now,
                    "finished_at": now,
                    "duration_seconds": 0.5,
                    "origin": "schedule",
                }
                for offset in rng.sample(range(10**6), 10)
            ]
            with engine.begin() as conn:
                conn.execute(sa.insert(runs), rows)
            with written.get_lock():
                written.value += len(rows)
    finally:
        engine.dispose()


class _Writer:
    """:func:`_write_ends` in a child process (not a thread of the scraper's process: a worker
    writes its ends from a process of its own)."""

    def __init__(self, url: str, names: list[str]):
        context = multiprocessing.get_context("spawn")
        self.ready, self.halt, self.counter = context.Event(), context.Event(), context.Value("i", 0)
        self.process = context.Process(
            target=_write_ends, args=(url, names, self.ready, self.halt, self.counter), daemon=True
        )

    def start(self) -> None:
        """Start writing; back once the child writes (its imports done)."""
        self.process.start()
        if not self.ready.wait(60):
            raise RuntimeError("the writer of run ends did not start within 60 s")

    def stop(self) -> None:
        self.halt.set()
        self.process.join(60)
        if self.process.exitcode != 0:
            raise RuntimeError(f"the writer of run ends exited with {self.process.exitcode}")

    @property
    def written(self) -> int:
        return self.counter.value


def _scrapes(server: _Server, window: float) -> dict[str, Any]:
    conn = server.connection()
    try:
        latencies = []
        deadline = time.perf_counter() + window
        while time.perf_counter() < deadline:
            latencies.append(server.get(conn, "/metrics"))
    finally:
        conn.close()
    return {
        "scrapes": len(latencies),
        "p50_s": common.percentile(latencies, 0.5),
        "p99_s": common.percentile(latencies, 0.99),
        "max_s": max(latencies),
    }


def _backend(opt: common.Options, url_of: Any, label: str) -> dict[str, Any]:
    sizes = _sizes(opt)
    window, reps = sizes["window_s"], opt.reps()
    result: dict[str, Any] = {"store": label, "list": [], "metrics": None}
    for count in sizes["list_counts"]:
        with url_of(f"list{count}") as url:
            common.populate(url, count)
            server = _Server(opt, url, f"{label}-list-{count}")
            try:
                server.get(server.connection(), "/api/schedules")  # the store opened, caches warm
                windows = [_load(server, "/api/schedules", CLIENTS, window) for _ in range(reps)]
            finally:
                server.stop()
        result["list"].append(
            {
                "schedules": count,
                "requests_per_s": common.summary([w["requests_per_s"] for w in windows], 1),
                "p50_s": common.summary([w["p50_s"] for w in windows], 4),
                "p99_s": common.summary([w["p99_s"] for w in windows], 4),
            }
        )
    count, per = sizes["metrics_schedules"], sizes["runs_per_schedule"]
    with url_of("metrics") as url:
        common.populate(url, count)
        names = [f"idle-{i:06d}" for i in range(count)]
        filled = time.perf_counter()
        _fill_history(url, names, per)
        filled = time.perf_counter() - filled
        firsts, windows, written = [], [], 0
        for rep in range(reps):
            server = _Server(opt, url, f"{label}-metrics-{rep}")
            writer = _Writer(url, names)
            try:
                firsts.append(server.get(server.connection(), "/metrics"))
                writer.start()
                windows.append(_scrapes(server, window))
            finally:
                writer.stop()
                server.stop()
            written += writer.written
    result["metrics"] = {
        "schedules": count,
        "history_rows": count * per,
        "fill_s": round(filled, 1),
        "first_scrape_s": common.summary(firsts, 3),
        "scrapes_per_window": common.summary([w["scrapes"] for w in windows], 0),
        "p50_s": common.summary([w["p50_s"] for w in windows], 4),
        "p99_s": common.summary([w["p99_s"] for w in windows], 4),
        "max_s": common.summary([w["max_s"] for w in windows], 4),
        "ends_written": written,
    }
    return result


def run(opt: common.Options) -> dict[str, Any]:
    (opt.workdir / NAME).mkdir(parents=True, exist_ok=True)

    def sqlite_of(label: str) -> Any:
        from contextlib import nullcontext

        path: Path = opt.workdir / NAME / f"{label}.db"
        return nullcontext(common.sqlite_url(path))

    results = [_backend(opt, sqlite_of, "SQLite")]
    if opt.pg_url:
        results.append(_backend(opt, lambda _label: common.pg_schema(opt.pg_url), "PostgreSQL"))
    sizes = _sizes(opt)
    return {
        "params": {
            **sizes,
            "clients": CLIENTS,
            "ends_per_second": ENDS_PER_SECOND,
            "repetitions": opt.reps(),
        },
        "results": results,
        "notes": [] if opt.pg_url else [f"PostgreSQL skipped: {opt.pg_note}"],
    }


def markdown(report: dict[str, Any]) -> str:
    params = report["params"]
    lines = [
        f"A `flowyml-sched serve` process on loopback, admin token; median of {params['repetitions']} windows of "
        f"{params['window_s']} s (min-max). `GET /api/schedules`: {params['clients']} client threads, keep-alive; "
        "latency of each request, body read whole.",
        "",
        "| store | schedules | requests/s | p50 | p99 |",
        "|---|---:|---|---|---|",
    ]
    for r in report["results"]:
        for entry in r["list"]:
            lines.append(
                f"| {r['store']} | {entry['schedules']:,} | {common.fmt_stats(entry['requests_per_s'], '', 1, 0)} | "
                f"{common.fmt_ms(entry['p50_s'])} | {common.fmt_ms(entry['p99_s'])} |"
            )
    lines += [
        "",
        f"`GET /metrics`, one scraper back to back while {params['ends_per_second']} run ends a second are "
        "written; the first scrape after the server started writes every schedule's lines.",
        "",
        "| store | schedules | history rows | first scrape | scrapes/window | p50 | p99 | max |",
        "|---|---:|---:|---|---|---|---|---|",
    ]
    for r in report["results"]:
        m = r["metrics"]
        lines.append(
            f"| {r['store']} | {m['schedules']:,} | {m['history_rows']:,} | {common.fmt_ms(m['first_scrape_s'])} | "
            f"{common.fmt_stats(m['scrapes_per_window'], '', 1, 0)} | {common.fmt_ms(m['p50_s'])} | "
            f"{common.fmt_ms(m['p99_s'])} | {common.fmt_ms(m['max_s'])} |"
        )
    lines += [f"\n{note}" for note in report.get("notes", [])]
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for r in report["results"]:
        m = r["metrics"]
        p99 = m["p99_s"]["median"]
        found.append(
            common.target(
                f"/metrics scrape p99 < 200 ms with {m['schedules']:,} schedules and {m['history_rows']:,} "
                f"history rows ({r['store']})",
                f"{p99 * 1e3:.1f} ms",
                p99 < 0.2,
            )
        )
    return found
