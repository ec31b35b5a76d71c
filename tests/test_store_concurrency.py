"""Concurrent writers on one store: real processes, started together behind a barrier file.

Each child imports everything, reports ready, waits for the ``go`` file, then writes. The
first test also races the schema creation itself (the file does not exist beforehand).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from flowyml_sched.model import Run, RunStatus, Schedule
from flowyml_sched.store import ScheduleStore, open_store
from flowyml_sched.triggers import HourlyTrigger

WRITERS = 8

CHILD = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime, timedelta, timezone
    from pathlib import Path

    from flowyml_sched.model import Run, RunStatus, Schedule
    from flowyml_sched.store import open_store
    from flowyml_sched.triggers import DailyTrigger

    url, index, barrier, rounds = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    now = datetime(2025, 3, 30, 0, 30, tzinfo=timezone.utc)
    (barrier / f"ready-{index}").touch()
    deadline = time.monotonic() + 60
    while not (barrier / "go").exists():
        if time.monotonic() > deadline:
            sys.exit("timed out waiting at the barrier")
        time.sleep(0.001)
    name = f"job-{index}"
    with open_store(url) as store:
        schedule = store.add(
            Schedule(name=name, pipeline="etl.jobs:run", trigger=DailyTrigger(2, index), params={"i": index}), now
        )
        for k in range(rounds):
            store.record_run(Run(name, now + timedelta(minutes=k), RunStatus.succeeded, worker=name))
            schedule = store.replace(schedule, now + timedelta(minutes=k))
            store.list()
            store.last_runs([name])
    print("ok", name)
    """
)


def run_writers(url: str, barrier: Path, rounds: int) -> list[subprocess.CompletedProcess]:
    barrier.mkdir()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(i), str(barrier), str(rounds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WRITERS)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(barrier.glob("ready-*"))) < WRITERS:
            if time.monotonic() > deadline or any(c.poll() is not None for c in children):
                break
            time.sleep(0.01)
        (barrier / "go").touch()
        results = []
        for child in children:
            out, err = child.communicate(timeout=120)
            results.append(subprocess.CompletedProcess(child.args, child.returncode, out, err))
        return results
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def check(results: list[subprocess.CompletedProcess]) -> None:
    for index, result in enumerate(results):
        assert "locked" not in result.stderr, result.stderr
        assert result.returncode == 0, f"writer {index} exited {result.returncode}:\n{result.stderr}"
        assert result.stdout.strip() == f"ok job-{index}"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_writers_on_a_fresh_store_all_land(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """8 processes open a store that does not exist yet (racing its creation) and add one schedule each."""
    url = request.getfixturevalue(f"{backend}_url")
    check(run_writers(url, tmp_path / "barrier", rounds=0))
    with open_store(url) as store:
        assert [s.name for s in store.list()] == [f"job-{i}" for i in range(WRITERS)]
        assert all(s.version == 1 for s in store.list())


def test_sqlite_writers_never_see_database_is_locked(sqlite_url: str, tmp_path: Path) -> None:
    """8 processes each add, then interleave 25 rounds of record_run + replace + reads on one file."""
    open_store(sqlite_url).close()
    rounds = 25
    check(run_writers(sqlite_url, tmp_path / "barrier", rounds=rounds))
    with open_store(sqlite_url) as store:
        schedules = store.list()
        assert [s.name for s in schedules] == [f"job-{i}" for i in range(WRITERS)]
        assert {s.version for s in schedules} == {rounds + 1}
        for i in range(WRITERS):
            assert len(store.history(f"job-{i}", limit=1000)) == rounds


def test_one_store_shared_by_threads(store: ScheduleStore) -> None:
    """Threads of one process share a store object (the worker will): every write lands."""
    now = datetime(2025, 3, 30, tzinfo=timezone.utc)

    def work(index: int) -> None:
        name = f"thread-{index}"
        store.add(Schedule(name=name, pipeline="p", trigger=HourlyTrigger(index)), now)
        store.record_run(Run(name, now, RunStatus.succeeded))
        store.list()

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        list(pool.map(work, range(WRITERS)))
    assert len(store.list()) == WRITERS
    assert set(store.last_runs()) == {f"thread-{i}" for i in range(WRITERS)}


def test_a_create_that_meets_another_writers_uncommitted_name_on_postgresql_names_that_schedule(
    postgresql_url: str,
) -> None:
    from flowyml_sched.errors import ScheduleExists
    from flowyml_sched.store.schema import schedules

    with open_store(postgresql_url) as store:
        store.add(Schedule("template", "p:q", HourlyTrigger(0)), datetime(2026, 1, 1, tzinfo=timezone.utc))
        engine = sa.create_engine(postgresql_url, poolclass=sa.pool.NullPool)
        with engine.connect() as other:
            row = dict(other.execute(sa.select(schedules)).mappings().one())
            other.rollback()
            writing = other.begin()
            other.execute(sa.insert(schedules), row | {"name": "taken"})  # not committed: apply cannot see it
            wanted = [Schedule(name, "p:q", HourlyTrigger(5)) for name in ("new", "taken")]
            with ThreadPoolExecutor(1) as pool:
                applying = pool.submit(
                    store.apply, creates=wanted, updates=[], deletes=[], now=datetime(2026, 1, 2, tzinfo=timezone.utc)
                )
                with engine.connect() as watch:  # until the insert waits for the other writer's row lock
                    while (
                        not applying.done()
                        and not watch.execute(sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar()
                    ):
                        time.sleep(0.01)
                writing.commit()
                with pytest.raises(ScheduleExists, match="'taken'"):
                    applying.result(timeout=30)
        engine.dispose()
        assert [s.name for s in store.list()] == ["taken", "template"]
