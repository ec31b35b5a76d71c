"""Pipelines for the worker's tests: plain callables with known behaviour.

Reference them as ``pipelines_for_tests:NAME``. ``tests/`` is not a package (no
``__init__.py``): pytest puts this directory on ``sys.path`` of the test process, and a
child process (``python -m flowyml_sched.runner``) finds the module when ``PYTHONPATH``
holds it, e.g. ``monkeypatch.setenv("PYTHONPATH", pythonpath())``.

Recording: the pipelines that take ``record`` append one JSON line per event to that file
(or to the file named by ``$FLOWYML_TEST_RECORD`` when ``record`` is not given); read them
back with :func:`read_records`. Each line has ``event``, ``pid``, ``at`` (``time.time()``)
and, where known, ``scheduled_for`` (ISO 8601) and ``tag``. Lines are written with one
``O_APPEND`` write each, so concurrent processes do not interleave them.

Keep the names and signatures stable: several test modules use them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

RECORD_ENV = "FLOWYML_TEST_RECORD"
"""Environment variable naming the record file when a pipeline gets no ``record`` param."""

TESTS_DIR = Path(__file__).resolve().parent
"""This directory: what a child process needs on ``PYTHONPATH`` to import this module."""


def pythonpath() -> str:
    """``PYTHONPATH`` with this directory first (for child processes running these pipelines)."""
    existing = os.environ.get("PYTHONPATH")
    return os.pathsep.join([str(TESTS_DIR), existing] if existing else [str(TESTS_DIR)])


def _record(record: str | None, event: str, scheduled_for: datetime | None = None, **extra: Any) -> None:
    path = record or os.environ.get(RECORD_ENV)
    if not path:
        return
    line = {"event": event, "pid": os.getpid(), "ppid": os.getppid(), "at": time.time(), **extra}
    if scheduled_for is not None:
        line["scheduled_for"] = scheduled_for.isoformat()
    data = (json.dumps(line) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The JSON lines a record file holds, in the order written ([] when it does not exist)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def ok(record: str | None = None, tag: str | None = None) -> str:
    """Succeeds at once (returns a string, which is ignored)."""
    _record(record, "ok", tag=tag)
    return "done"


def ok_with_scheduled_for(scheduled_for: datetime, record: str | None = None, tag: str | None = None) -> None:
    """Succeeds at once, recording the fire time it was called for."""
    _record(record, "ok", scheduled_for, tag=tag)


def raises(record: str | None = None, message: str = "boom from pipelines_for_tests.raises") -> None:
    """Fails with ``RuntimeError(message)``."""
    _record(record, "raises")
    raise RuntimeError(message)


def raises_unstorable() -> None:
    """Fails with a message no database stores as is: a NUL and an undecodable byte."""
    raise RuntimeError("bad\x00byte " + b"\xff".decode("utf-8", "surrogateescape"))


def raises_keyboard_interrupt() -> None:
    """Fails with a ``BaseException`` that is not an ``Exception``."""
    raise KeyboardInterrupt("from pipelines_for_tests")


def flaky(record: str, failures: int = 1) -> None:
    """Fails the first ``failures`` times it is called with this record file, then succeeds."""
    calls = sum(1 for r in read_records(record) if r["event"] in ("flaky-failed", "flaky-ok"))
    if calls < failures:
        _record(record, "flaky-failed")
        raise RuntimeError(f"flaky failure {calls + 1} of {failures}")
    _record(record, "flaky-ok")


def exits(code: int = 3, record: str | None = None) -> None:
    """Calls ``sys.exit(code)``."""
    _record(record, "exits")
    sys.exit(code)


def hard_exit(code: int = 3, record: str | None = None) -> None:
    """Calls ``os._exit(code)``: the process ends without reporting a result."""
    _record(record, "hard_exit")
    sys.stdout.flush()
    os._exit(code)


def hang(seconds: float = 3600.0, record: str | None = None) -> None:
    """Sleeps ``seconds`` (an hour by default): only a timeout or a signal ends it."""
    _record(record, "hang")
    time.sleep(seconds)


def prints_100mb(megabytes: int = 100) -> None:
    """Writes ``megabytes`` MiB to stdout, then succeeds."""
    chunk = b"x" * 1023 + b"\n"
    out = sys.stdout.buffer
    for _ in range(megabytes * 1024):
        out.write(chunk)
    out.flush()


def returns_none() -> None:
    """Succeeds and returns None."""
    return None


def slow(
    seconds: float = 1.0, scheduled_for: datetime | None = None, record: str | None = None, tag: str | None = None
) -> None:
    """Sleeps ``seconds``, recording ``start`` before and ``end`` after (with the fire time)."""
    _record(record, "start", scheduled_for, tag=tag)
    time.sleep(seconds)
    _record(record, "end", scheduled_for, tag=tag)


def slow_until_stopped(
    seconds: float = 1.0, scheduled_for: datetime | None = None, record: str | None = None, tag: str | None = None
) -> None:
    """As :func:`slow`, and a SIGTERM records ``stopped`` before the process exits (status 143):
    when a run that was stopped ended."""
    import signal

    def stopped(_signum: int, _frame: object) -> None:
        _record(record, "stopped", scheduled_for, tag=tag)
        os._exit(143)

    signal.signal(signal.SIGTERM, stopped)
    slow(seconds, scheduled_for, record, tag)


def gated(
    gate: str,
    scheduled_for: datetime | None = None,
    record: str | None = None,
    tag: str | None = None,
    timeout: float = 60.0,
) -> None:
    """Records ``start``, waits until the file ``gate`` exists (the test opens the gate by
    creating it), records ``end``. Raises TimeoutError after ``timeout`` seconds."""
    _record(record, "start", scheduled_for, tag=tag)
    deadline = time.monotonic() + timeout
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate} was not opened within {timeout:g} s")
        time.sleep(0.01)
    _record(record, "end", scheduled_for, tag=tag)


def parent_of(pid: int) -> int:
    """The parent process id of ``pid`` (from /proc)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def worker_pid() -> int:
    """The pid of the worker that started this run's process: its parent, or for a run forked
    from a warm template (``python -m flowyml_sched.runner --template``), the template's parent."""
    parent = os.getppid()
    if b"--template" in Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0"):
        return parent_of(parent)
    return parent


def attempt_recorder(record: str, tag: str, seconds: float = 0.3, scheduled_for: datetime | None = None) -> None:
    """For the chaos test, in a child process of the worker: records ``start`` with the fire
    time, the attempt and the id of the worker that started it (from the run's environment) and its pid
    (``worker_pid``), sleeps ``seconds``, records ``end`` with the same."""
    mine = {
        "attempt": int(os.environ["FLOWYML_SCHED_ATTEMPT"]),
        "worker": os.environ["FLOWYML_SCHED_WORKER"],
        "worker_pid": worker_pid(),
    }
    _record(record, "start", scheduled_for, tag=tag, **mine)
    time.sleep(seconds)
    _record(record, "end", scheduled_for, tag=tag, **mine)


NOT_CALLABLE = 42
"""Resolves, but is not a pipeline."""


def leaves_background(seconds: float = 30.0) -> None:
    """Starts ``sleep seconds`` in the background (holding the output pipe) and returns at once."""
    import subprocess

    subprocess.Popen(["sleep", str(seconds)])


def grandchild_ignoring_term(seconds: float = 60.0) -> None:
    """Forks a child that ignores SIGTERM; both sleep ``seconds``."""
    import signal

    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(seconds)
        os._exit(0)
    time.sleep(seconds)
