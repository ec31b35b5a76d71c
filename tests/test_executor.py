"""The executor: a child run is its whole process group, so a run always ends; an in-process
run is prepared (pipeline resolved, arguments bound) before its instant and runs when called."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pipelines_for_tests import pythonpath, read_records

from flowyml_sched.executor import (
    STALLED,
    TIMEOUT_STOP_WAIT,
    ChildRun,
    Outcome,
    RunRequest,
    call_with_timeout,
    prepare_in_process,
)
from flowyml_sched.model import RunStatus

FIRE = datetime(2026, 1, 10, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _child_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", pythonpath())


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def run(tmp_path: Path, pipeline: str, params: dict, timeout: float | None) -> tuple[ChildRun, RunStatus, float]:
    child = ChildRun(RunRequest(pipeline, params, FIRE, "run-1"), tmp_path / "run.log", kill_grace=1.0).start()
    started = time.monotonic()
    outcome = child.wait(timeout)
    return child, outcome.status, time.monotonic() - started


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads process groups from /proc")
def test_a_background_process_left_behind_ends_with_the_run(tmp_path: Path) -> None:
    child, status, took = run(tmp_path, "pipelines_for_tests:leaves_background", {"seconds": 30}, None)
    assert status is RunStatus.succeeded
    assert took < 10  # not the 30 s the background sleep wanted
    assert child.pid is not None
    deadline = time.monotonic() + 5
    while group_members(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for the kernel to finish the kill, not for time
    assert group_members(child.pid) == []


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads process groups from /proc")
def test_a_grandchild_ignoring_sigterm_cannot_outlive_the_timeout(tmp_path: Path) -> None:
    child, status, took = run(tmp_path, "pipelines_for_tests:grandchild_ignoring_term", {"seconds": 60}, 2.0)
    assert status is RunStatus.timed_out
    assert took < 2.0 + 1.0 + 5  # timeout, kill grace, and slack for a loaded machine
    assert child.pid is not None
    deadline = time.monotonic() + 5
    while group_members(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert group_members(child.pid) == []
    assert os.path.exists(tmp_path / "run.log")


def test_an_in_process_run_is_prepared_ahead_and_runs_only_when_called(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    request = RunRequest("pipelines_for_tests:ok_with_scheduled_for", {"record": str(record)}, FIRE, "run-1")
    call = prepare_in_process(request)
    assert not record.exists()
    outcome = call()
    assert (outcome.status, outcome.error) == (RunStatus.succeeded, None)
    assert [r["scheduled_for"] for r in read_records(record)] == [FIRE.isoformat()]


@pytest.mark.parametrize(
    ("pipeline", "params", "error"),
    [
        ("no_such_module_here:job", {}, "no_such_module_here"),
        ("pipelines_for_tests:ok_with_scheduled_for", {"unknown": 1}, "do not fit the schedule's params"),
        ("pipelines_for_tests:raises", {}, "RuntimeError: boom"),
    ],
)
def test_a_prepared_run_that_cannot_run_or_raises_fails_when_called_not_before(
    pipeline: str, params: dict, error: str
) -> None:
    call = prepare_in_process(RunRequest(pipeline, params, FIRE, "run-1"))
    outcome = call()
    assert outcome.status is RunStatus.failed
    assert outcome.error is not None and error in outcome.error


def test_the_result_file_of_a_child_run_is_private_from_its_creation(tmp_path: Path) -> None:
    # a worker killed with -9 never reads (and removes) the result its child wrote: what the
    # child left behind must already be 0600, like the run's log
    result = tmp_path / "run.result.json"
    request = {"pipeline": "pipelines_for_tests:ok", "params": {}, "scheduled_for": FIRE.isoformat(), "run_id": "r"}
    old_umask = os.umask(0o022)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "flowyml_sched.runner", str(result)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.umask(old_umask)
    assert done.returncode == 0, done.stderr
    assert result.stat().st_mode & 0o777 == 0o600


def test_a_child_past_its_start_by_does_not_call_the_pipeline(tmp_path: Path) -> None:
    # a worker stalled after recording the start (its lease may be gone, the run taken over):
    # the child, started late, checks the instant the worker gave it and calls nothing
    record = tmp_path / "record.jsonl"
    request = RunRequest(
        "pipelines_for_tests:ok", {"record": str(record)}, FIRE, "run-1", start_by=time.monotonic() - 1
    )
    outcome = ChildRun(request, tmp_path / "run.log").start().wait(60)
    assert (outcome.status, outcome.error) == (RunStatus.interrupted, STALLED)
    assert not record.exists()


def test_a_child_within_its_start_by_calls_the_pipeline(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    request = RunRequest(
        "pipelines_for_tests:ok", {"record": str(record)}, FIRE, "run-1", start_by=time.monotonic() + 600
    )
    outcome = ChildRun(request, tmp_path / "run.log").start().wait(60)
    assert outcome.status is RunStatus.succeeded
    assert [r["event"] for r in read_records(record)] == ["ok"]


def test_an_in_process_run_past_its_timeout_is_stopped_at_its_next_line() -> None:
    steps: list[int] = []

    def python_loop() -> Outcome:  # as prepare_in_process's call, which reports what the pipeline raises
        try:
            for step in range(10_000):
                steps.append(step)
                time.sleep(0.01)  # returns to Python each time: where TimeoutError lands
        except TimeoutError:
            return Outcome(RunStatus.failed, "TimeoutError")
        return Outcome(RunStatus.succeeded)

    began = time.monotonic()
    outcome = call_with_timeout(python_loop, 0.3, "run-test")
    assert (outcome.status, outcome.error) == (RunStatus.timed_out, "timed out after 0.3 s")
    assert time.monotonic() - began < TIMEOUT_STOP_WAIT + 5
    count = len(steps)
    time.sleep(0.2)
    assert len(steps) == count  # its thread stopped


def test_an_in_process_run_blocked_in_c_past_its_timeout_is_reported_running_on() -> None:
    release = threading.Event()
    ended = threading.Event()

    def blocked() -> Outcome:  # as prepare_in_process's call, which reports what the pipeline raises
        try:
            release.wait()
        except TimeoutError:
            ended.set()
        return Outcome(RunStatus.failed)

    outcome = call_with_timeout(blocked, 0.2, "run-blocked")
    release.set()
    assert ended.wait(10)  # once the blocking call returned, the TimeoutError reached it
    assert outcome.status is RunStatus.timed_out
    assert outcome.error is not None and "runs on" in outcome.error


def test_an_in_process_run_within_its_timeout_keeps_its_outcome() -> None:
    assert call_with_timeout(lambda: Outcome(RunStatus.failed, "no"), 5, "run-quick") == Outcome(RunStatus.failed, "no")
    assert call_with_timeout(lambda: Outcome(RunStatus.succeeded), None, "run-unbounded").status is RunStatus.succeeded
