"""The command-line tool as real processes: concurrent writers, the worker's --sync and --check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name("flowyml-sched"))


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FLOWYML_SCHEDULER_DB_PATH": str(tmp_path / "store.db"),
        "FLOWYML_SCHEDULER_STATE_DIR": str(tmp_path / "state"),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }


def test_eight_add_processes_at_once_on_one_fresh_sqlite_file_all_land(env: dict[str, str]) -> None:
    processes = [
        subprocess.Popen(
            [CLI, "add", f"job-{i}", "--pipeline", "daily_summary", "--hourly", str(i), "--no-check-pipeline"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0] * 8, outputs
    assert not any("locked" in err for _, err in outputs)
    listed = cli("list", "--json", env=env)
    import json

    assert sorted(s["name"] for s in json.loads(listed.stdout)) == [f"job-{i}" for i in range(8)]


SPEC = """version: 1
schedules:
  - name: {name}
    pipeline: daily_summary
    daily: "02:30"
"""


def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling the store for the worker's work, not waiting for time


def names(env: dict[str, str]) -> list[str]:
    import json

    listed = cli("list", "--json", env=env)
    return [s["name"] for s in json.loads(listed.stdout)] if listed.returncode == 0 else []


def test_the_worker_syncs_its_file_at_start_on_change_and_on_sighup_and_check_sees_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    spec = tmp_path / "schedules.yaml"
    spec.write_text(SPEC.format(name="first"))
    assert cli("run-worker", "--check", env=env).returncode == 1  # no store, no worker yet
    worker = subprocess.Popen(
        # no poll and no heartbeat within the test: an inotify watch on the file wakes the worker
        [CLI, "run-worker", "--sync", str(spec), "--poll-interval", "3600", "--lease", "3600"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: names(env) == ["first"], "the file to be applied at start")
        assert cli("run-worker", "--check", env=env).returncode == 0
        spec.write_text(SPEC.format(name="second"))
        os.utime(spec, (time.time() + 5, time.time() + 5))  # a visibly newer file, even on coarse clocks
        wait_for(lambda: names(env) == ["second"], "the changed file to be applied (and 'first' pruned)")
        cli("add", "from-cli", "--pipeline", "daily_summary", "--hourly", "5", env=env)
        stamp = spec.stat().st_mtime
        spec.write_text(SPEC.format(name="third"))
        os.utime(spec, (stamp, stamp))  # same modification time: only SIGHUP makes it re-read
        worker.send_signal(signal.SIGHUP)
        # re-applied, pruning only what came from the file: the CLI's schedule stays
        wait_for(lambda: names(env) == ["from-cli", "third"], "SIGHUP's re-apply")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert cli("run-worker", "--check", env=env).returncode == 1  # it stopped cleanly: no live worker


def history(env: dict[str, str], name: str) -> list[dict]:
    import json

    shown = cli("history", name, "--json", env=env)
    return json.loads(shown.stdout) if shown.returncode == 0 else []


def start_syncing_worker(spec: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """A worker applying ``spec``, with no poll and no heartbeat within a test: only the file's
    inotify watch makes it apply a change."""
    return subprocess.Popen(
        [CLI, "run-worker", "--in-process", "--sync", str(spec), "--poll-interval", "3600", "--lease", "3600"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(worker: subprocess.Popen[str]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def test_the_worker_follows_a_deploy_that_swaps_a_symlinked_directory(env: dict[str, str], tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    for release, name in (("v1", "first"), ("v2", "second")):
        (releases / release).mkdir(parents=True)
        (releases / release / "schedules.yaml").write_text(SPEC.format(name=name))
    current = tmp_path / "current"
    current.symlink_to(releases / "v1")
    worker = start_syncing_worker(current / "schedules.yaml", env)
    try:
        wait_for(lambda: names(env) == ["first"], "v1 to be applied at start")
        staged = tmp_path / "current.new"
        staged.symlink_to(releases / "v2")
        os.replace(staged, current)  # an atomic deploy
        wait_for(lambda: "second" in names(env), "the swap to v2 to be applied")
        (releases / "v2" / "schedules.yaml").write_text(SPEC.format(name="third"))
        wait_for(lambda: "third" in names(env) and "second" not in names(env), "an edit of v2, now watched")
    finally:
        stop(worker)


def test_a_sync_file_being_written_is_not_applied_half_written(env: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "schedules.yaml"
    spec.write_text(SPEC.format(name="first"))
    worker = start_syncing_worker(spec, env)
    try:
        wait_for(lambda: names(env) == ["first"], "the file to be applied at start")
        with spec.open("w") as writer:
            writer.write("version: 1\nschedules:\n")  # valid so far, and it would delete "first"
            writer.flush()
            # a round for another reason meanwhile: a schedule due soon, added by the CLI (its
            # pipeline does not exist: the run fails and writes nothing)
            soon = (datetime.now(timezone.utc) + timedelta(seconds=5)).isoformat()  # after the add, even slow
            options = ["--pipeline", "no_such_pipeline", "--every", "1h", "--anchor", soon, "--no-check-pipeline"]
            added = cli("add", "now", *options, env=env)
            assert added.returncode == 0, added.stderr
            wait_for(lambda: history(env, "now"), "the worker's round that runs 'now'")
            assert names(env) == ["first", "now"]
            writer.write(SPEC.format(name="second").split("schedules:\n", 1)[1])
        wait_for(lambda: names(env) == ["now", "second"], "the finished file to be applied")
    finally:
        stop(worker)


def test_trigger_wakes_an_idle_worker_and_wait_exits_with_the_runs_outcome(env: dict[str, str], store_url: str) -> None:
    from pipelines_for_tests import pythonpath

    env = {**env, "FLOWYML_SCHEDULER_DB_URL": store_url, "PYTHONPATH": pythonpath()}
    del env["FLOWYML_SCHEDULER_DB_PATH"]
    for name, pipeline in (("good", "pipelines_for_tests:ok"), ("bad", "pipelines_for_tests:raises")):
        assert cli("add", name, "--pipeline", pipeline, "--daily", "02:00", env=env).returncode == 0
    assert cli("pause", "bad", env=env).returncode == 0  # a manual run is a manual act: paused ones run too
    # no poll and no heartbeat within the test: only the store's change watch wakes the worker
    worker = subprocess.Popen(
        [CLI, "run-worker", "--in-process", "--poll-interval", "3600", "--lease", "3600"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: cli("run-worker", "--check", env=env).returncode == 0, "the worker to serve")
        good = cli("trigger", "good", "--wait", env=env)
        assert good.returncode == 0, good.stderr
        assert "good at " in good.stdout and ": succeeded" in good.stdout
        bad = cli("trigger", "bad", "--wait", env=env)
        assert bad.returncode == 1, bad.stderr
        assert ": failed (RuntimeError: boom from pipelines_for_tests.raises)" in bad.stdout
    finally:
        stop(worker)
    assert [(r["status"], r["origin"]) for r in history(env, "good")] == [("succeeded", "manual")]
