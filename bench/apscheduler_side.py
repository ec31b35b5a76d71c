#!/usr/bin/env python3
"""The APScheduler side of the comparisons: APScheduler 3.x ``BackgroundScheduler`` with a
``SQLAlchemyJobStore``, in a process of its own. ``bench/run.py`` runs it; it needs
APScheduler (``pip install -e '.[bench]'``), the rest of the suite does not.

Jobs mirror the flowyml-sched schedules of the same benchmark: the schedules that never come
due are ``CronTrigger.from_crontab("0 0 1 1 *")`` jobs of ``bench_jobs:aps_noop``; the due
ones are ``IntervalTrigger(days=365, start_date=T)`` jobs of ``bench_jobs:aps_record``,
which record when they start. Every job has ``misfire_grace_time=None`` (run however late),
``coalesce=True`` and ``max_instances=1``, so that no fire time is dropped.

Commands (each writes its result as JSON to ``--result``):

- ``lateness``: fill the job store with ``--idle`` far-future jobs, start the scheduler, and
  for each of ``--reps`` rounds store ``--due`` jobs due across ``--window`` seconds from
  ``--margin`` seconds on, wake the scheduler, and wait until they have all run. Reports
  each job's start minus its scheduled time.
- ``idle``: fill the job store with ``--idle`` far-future jobs, start the scheduler, write
  ``--ready`` and run until SIGTERM.
- ``add``: start the scheduler paused on an empty job store and ``add_job`` the schedules
  of ``--specs`` (JSON: ``[[name, cron, zone], ...]``) one by one; reports the seconds.
"""

from __future__ import annotations

import argparse
import json
import pickle
import signal
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import bench_jobs
import sqlalchemy as sa
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import datetime_to_utc_timestamp

UTC = timezone.utc
FAR_CRON = "0 0 1 1 *"
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}


def scheduler(url: str) -> tuple[BackgroundScheduler, SQLAlchemyJobStore]:
    store = SQLAlchemyJobStore(url=url)
    return BackgroundScheduler(jobstores={"default": store}, timezone=UTC, job_defaults=JOB_DEFAULTS), store


def _row(sched: BackgroundScheduler, job_id: str, func: str, trigger, kwargs: dict, next_run: datetime) -> dict:
    """The row ``SQLAlchemyJobStore.add_job`` would write for this job."""
    job = Job(
        sched, id=job_id, func=func, trigger=trigger, executor="default", args=(), kwargs=kwargs, name=job_id,
        next_run_time=next_run, **JOB_DEFAULTS,
    )  # fmt: skip
    return {
        "id": job_id,
        "next_run_time": datetime_to_utc_timestamp(next_run),
        "job_state": pickle.dumps(job.__getstate__(), pickle.HIGHEST_PROTOCOL),
    }


def fill_idle(sched: BackgroundScheduler, store: SQLAlchemyJobStore, count: int) -> None:
    """Empty the job table, then insert ``count`` far-future cron jobs in one transaction."""
    store.jobs_t.create(store.engine, checkfirst=True)
    trigger = CronTrigger.from_crontab(FAR_CRON, timezone=UTC)
    next_run = trigger.get_next_fire_time(None, datetime.now(UTC))
    template = _row(sched, "idle-000000", "bench_jobs:aps_noop", trigger, {}, next_run)
    state = pickle.loads(template["job_state"])
    rows = []
    for i in range(count):
        job_id = f"idle-{i:06d}"
        rows.append(template | {"id": job_id, "job_state": pickle.dumps(state | {"id": job_id, "name": job_id})})
    with store.engine.begin() as conn:
        conn.execute(store.jobs_t.delete())
        for start in range(0, len(rows), 10_000):
            conn.execute(store.jobs_t.insert(), rows[start : start + 10_000])


def arm(sched: BackgroundScheduler, store: SQLAlchemyJobStore, instants: list[datetime]) -> None:
    """Replace the due jobs with ones due at ``instants`` (one transaction), then wake the scheduler."""
    rows = [
        _row(
            sched,
            f"due-{i:05d}",
            "bench_jobs:aps_record",
            IntervalTrigger(days=365, start_date=at, timezone=UTC),
            {"due": at.timestamp()},
            at,
        )
        for i, at in enumerate(instants)
    ]
    with store.engine.begin() as conn:
        conn.execute(store.jobs_t.delete().where(store.jobs_t.c.id.like("due-%")))
        conn.execute(store.jobs_t.insert(), rows)
    sched.wakeup()


def _settled(store: SQLAlchemyJobStore, deadline: float) -> None:
    """Wait until the scheduler has stored the next run time (a year on) of every due job it
    ran: its thread writes them after the jobs start, and the next repetition's ``arm``
    must not be overwritten by a late write of this one's."""
    soon = (datetime.now(UTC) + timedelta(days=1)).timestamp()
    pending = store.jobs_t.select().where(store.jobs_t.c.id.like("due-%"), store.jobs_t.c.next_run_time < soon)
    while time.monotonic() < deadline:
        with store.engine.connect() as conn:
            if conn.execute(pending).first() is None:
                return
        time.sleep(0.05)


def lateness(args: argparse.Namespace) -> dict:
    sched, store = scheduler(args.url)
    fill_idle(sched, store, args.idle)
    sched.start()
    rounds = []
    try:
        for _ in range(args.reps):
            bench_jobs.FIRED.clear()
            base = datetime.now(UTC) + timedelta(seconds=args.margin)
            instants = [base + timedelta(seconds=args.window * i / args.due) for i in range(args.due)]
            arm(sched, store, instants)
            deadline = time.monotonic() + args.margin + args.window + 60
            while len(bench_jobs.FIRED) < args.due and time.monotonic() < deadline:
                time.sleep(0.05)
            rounds.append({"lateness_s": [started - due for due, started in bench_jobs.FIRED], "expected": args.due})
            _settled(store, deadline)
    finally:
        sched.shutdown(wait=True)
    return {"rounds": rounds}


def idle(args: argparse.Namespace) -> dict:
    sched, store = scheduler(args.url)
    fill_idle(sched, store, args.idle)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sched.start()
    Path(args.ready).write_text("ready\n")
    stop.wait()
    sched.shutdown(wait=True)
    return {}


def add(args: argparse.Namespace) -> dict:
    specs = json.loads(Path(args.specs).read_text())
    sched, store = scheduler(args.url)
    sched.start(paused=True)
    began = time.perf_counter()
    for name, cron, zone in specs:
        sched.add_job("bench_jobs:aps_noop", CronTrigger.from_crontab(cron, timezone=zone), id=name, name=name)
    seconds = time.perf_counter() - began
    sched.shutdown(wait=True)
    engine = sa.create_engine(args.url)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(store.jobs_t)).scalar_one()
    engine.dispose()
    return {"seconds": seconds, "stored": stored}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("lateness", "idle", "add"):
        command = sub.add_parser(name)
        command.add_argument("--url", required=True)
        command.add_argument("--result", required=True)
        if name in ("lateness", "idle"):
            command.add_argument("--idle", type=int, required=True)
    late = sub.choices["lateness"]
    late.add_argument("--due", type=int, required=True)
    late.add_argument("--window", type=float, required=True)
    late.add_argument("--margin", type=float, required=True)
    late.add_argument("--reps", type=int, required=True)
    sub.choices["idle"].add_argument("--ready", required=True)
    sub.choices["add"].add_argument("--specs", required=True)
    args = parser.parse_args(argv)
    result = {"lateness": lateness, "idle": idle, "add": add}[args.command](args)
    Path(args.result).write_text(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
