"""File run locks: exclusion between lock objects, threads and processes; release on death."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

from flowyml_sched.locks import FileLocks


def test_a_held_lock_refuses_a_second_lock_object_until_released(tmp_path: Path) -> None:
    locks = FileLocks(tmp_path / "locks")
    first, second = locks.lock("etl"), locks.lock("etl")
    assert first.acquire(0)
    assert not second.acquire(0)
    assert not first.acquire(0)  # not re-entrant either
    assert locks.lock("other").acquire(0)  # other schedules are independent
    first.release()
    assert second.acquire(0)
    second.release()
    second.release()  # releasing twice is harmless


def test_a_waiting_acquire_gets_the_lock_once_its_holder_releases(tmp_path: Path) -> None:
    locks = FileLocks(tmp_path / "locks")
    holder = locks.lock("etl")
    assert holder.acquire(0)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(locks.lock("etl").acquire(30.0)))
    waiter.start()
    holder.release()
    waiter.join(30)
    assert got == [True]


def test_a_lock_held_by_another_process_is_refused_and_freed_by_its_kill_9(tmp_path: Path) -> None:
    directory = tmp_path / "locks"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from flowyml_sched.locks import FileLocks; "
            f"assert FileLocks(Path({str(directory)!r})).lock('etl').acquire(0); print('held', flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = FileLocks(directory).lock("etl")
        assert not lock.acquire(0)
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        assert lock.acquire(0)
        lock.release()
    finally:
        holder.kill()
        holder.wait(30)
