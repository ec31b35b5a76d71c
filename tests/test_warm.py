"""Warm templates (flowyml_sched.warm): runs forked, prepared, from a process that imported
their pipeline's module once; real processes throughout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pipelines_for_tests import parent_of, pythonpath, read_records
from test_executor import group_members
from test_worker_tick import children_of

from flowyml_sched.executor import ChildRun, RunRequest
from flowyml_sched.model import RunStatus
from flowyml_sched.warm import PREPARE_CAP, PREPARE_FLOOR, Templates, template_key

FIRE = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def templates(monkeypatch: pytest.MonkeyPatch) -> Iterator[Templates]:
    monkeypatch.setenv("PYTHONPATH", pythonpath())
    made = Templates()
    yield made
    made.close()


@pytest.fixture
def code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory for pipeline modules written by a test, first on the children's PYTHONPATH."""
    directory = tmp_path / "code"
    directory.mkdir()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(directory), pythonpath()]))
    return directory


def run(templates: Templates, tmp_path: Path, pipeline: str, params: dict, name: str = "run") -> ChildRun:
    """A run of ``pipeline`` prepared (its template started first, if it can be)."""
    templates.start(pipeline)
    return ChildRun(RunRequest(pipeline, params, FIRE, name), tmp_path / f"{name}.log", kill_grace=1.0).prepare(
        templates
    )


def wait_gone(pid: int, timeout: float = 20.0) -> None:
    """Until ``pid`` is no process (or a zombie left to its parent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state == "Z":
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still there after {timeout} s")


def test_a_prepared_run_waits_for_its_release_and_runs_once_in_a_process_of_its_own(
    templates: Templates, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    children = [run(templates, tmp_path, "pipelines_for_tests:ok", {"record": str(record)}, f"r{n}") for n in range(2)]
    time.sleep(0.3)  # prepared: nothing runs before the release
    assert read_records(record) == []
    outcomes = [child.start().wait(60) for child in children]
    assert [o.status for o in outcomes] == [RunStatus.succeeded] * 2
    lines = read_records(record)
    assert sorted(line["pid"] for line in lines) == sorted(child.pid for child in children)
    assert len({line["ppid"] for line in lines}) == 1 and lines[0]["ppid"] != os.getpid()  # one template


def test_a_cancelled_prepared_run_runs_nothing_and_leaves_no_process_or_log(
    templates: Templates, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    child = run(templates, tmp_path, "pipelines_for_tests:ok", {"record": str(record)})
    assert child.pid is not None
    child.cancel()
    wait_gone(child.pid)
    assert read_records(record) == []
    assert not (tmp_path / "run.log").exists(), (tmp_path / "run.log").read_text()


def test_a_prepared_run_stopped_before_its_start_never_runs(templates: Templates, tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    child = run(templates, tmp_path, "pipelines_for_tests:ok", {"record": str(record)})
    child.stop(RunStatus.interrupted, "replaced")
    outcome = child.start().wait(60)
    assert (outcome.status, outcome.error) == (RunStatus.interrupted, "replaced")
    assert read_records(record) == []


def test_a_forked_run_past_its_timeout_is_stopped_with_its_process_group(templates: Templates, tmp_path: Path) -> None:
    child = run(templates, tmp_path, "pipelines_for_tests:grandchild_ignoring_term", {"seconds": 60})
    outcome = child.start().wait(1.0)
    assert outcome.status is RunStatus.timed_out
    assert child.pid is not None
    deadline = time.monotonic() + 5  # the SIGKILLed grandchild is reaped by init meanwhile
    while group_members(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert group_members(child.pid) == []  # nothing of its group is left


def test_its_output_goes_to_its_log_and_its_failure_to_its_outcome(templates: Templates, tmp_path: Path) -> None:
    outcome = run(templates, tmp_path, "pipelines_for_tests:raises", {"message": "boom here"}).start().wait(60)
    assert outcome.status is RunStatus.failed and "boom here" in (outcome.error or "")
    assert run(templates, tmp_path, "pipelines_for_tests:exits", {"code": 4}, "exits").start().wait(60).status is (
        RunStatus.failed
    )


def test_without_a_ready_template_a_run_starts_cold_at_once_and_one_is_started_for_the_next(
    templates: Templates, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    first = ChildRun(RunRequest("pipelines_for_tests:ok", {"record": str(record)}, FIRE, "a"), tmp_path / "a.log")
    assert first.prepare(templates).start().wait(60).status is RunStatus.succeeded
    assert read_records(record)[0]["ppid"] == os.getpid()  # a fresh interpreter of this process
    deadline = time.monotonic() + 60
    while templates.fork("pipelines_for_tests:ok") is None:  # started in the background meanwhile
        assert time.monotonic() < deadline, "no template started for the runs after the first"
        time.sleep(0.05)


def test_a_module_that_starts_threads_when_imported_runs_cold_every_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: Path
) -> None:
    (code / "threaded_pipeline.py").write_text(
        textwrap.dedent(
            """
            import os, threading, time
            helper = threading.Thread(target=time.sleep, args=(3600,), daemon=True)
            helper.start()
            def run(record):
                assert helper.is_alive(), "the thread started at import is gone"
                with open(record, "a") as handle:
                    handle.write(f"{os.getppid()}\\n")
            """
        )
    )
    record = tmp_path / "record.txt"
    templates = Templates()
    try:
        assert templates.start("threaded_pipeline:run") is False  # refused: a fork would lose the thread
        for name in ("a", "b"):
            child = run(templates, tmp_path, "threaded_pipeline:run", {"record": str(record)}, name)
            assert child.start().wait(60).status is RunStatus.succeeded
    finally:
        templates.close()
    assert record.read_text().split() == [str(os.getpid())] * 2  # fresh interpreters, both


def test_a_prepared_run_whose_template_died_before_its_start_starts_cold_and_runs_once(
    templates: Templates, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    child = run(templates, tmp_path, "pipelines_for_tests:ok", {"record": str(record)})
    assert child.pid is not None
    template = parent_of(child.pid)
    os.kill(template, signal.SIGKILL)
    wait_gone(child.pid)  # its template's death took it
    time.sleep(0.2)  # the worker's side has read the template's end
    assert child.start().wait(60).status is RunStatus.succeeded
    (line,) = read_records(record)
    assert line["ppid"] == os.getpid()


def test_a_running_run_whose_template_died_is_ended_with_its_process_group(
    templates: Templates, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    child = run(templates, tmp_path, "pipelines_for_tests:grandchild_ignoring_term", {"seconds": 60})
    child.start()
    assert child.pid is not None
    time.sleep(0.5)  # the pipeline forked its grandchild
    template = parent_of(child.pid)
    os.kill(template, signal.SIGKILL)
    outcome = child.wait(60)
    assert outcome.status is RunStatus.failed and "SIGKILL" in (outcome.error or "")
    deadline = time.monotonic() + 10
    while group_members(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert group_members(child.pid) == []  # the grandchild went with it
    assert not read_records(record)


def test_a_template_stuck_in_its_import_holds_up_no_run_and_goes_when_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: Path
) -> None:
    (code / "hanging_import.py").write_text(
        "import os, time\nif os.environ.get('HANG'):\n    time.sleep(3600)\ndef run():\n    pass\n"
    )
    monkeypatch.setenv("HANG", "1")
    templates = Templates()
    began = time.monotonic()
    assert templates.fork("hanging_import:run") is None  # at once: the run starts cold (and its timeout holds)
    assert time.monotonic() - began < 5
    deadline = time.monotonic() + 30
    importing = []
    while not importing and time.monotonic() < deadline:
        importing = [
            pid
            for pid in children_of(os.getpid())
            if b"hanging_import:run" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        time.sleep(0.05)
    assert importing, "no template was started"
    templates.close()
    for pid in importing:
        wait_gone(pid, 10)


def test_the_atexit_handlers_of_its_modules_run_in_every_forked_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: Path
) -> None:
    (code / "exits_politely.py").write_text(
        "import atexit, os\n"
        "atexit.register(lambda: open(os.environ['EXIT_RECORD'], 'a').write(f'{os.getpid()}\\n'))\n"
        "def run():\n    pass\n"
    )
    record = tmp_path / "exits.txt"
    monkeypatch.setenv("EXIT_RECORD", str(record))
    templates = Templates()
    try:
        pids = []
        for name in ("a", "b"):
            child = run(templates, tmp_path, "exits_politely:run", {}, name)
            assert child.start().wait(60).status is RunStatus.succeeded
            pids.append(str(child.pid))
        assert record.read_text().split() == pids
    finally:
        templates.close()


def test_a_pipeline_whose_module_cannot_be_imported_starts_cold_and_fails_saying_why(
    templates: Templates, tmp_path: Path
) -> None:
    child = run(templates, tmp_path, "no_such_module_here:run", {})
    outcome = child.start().wait(60)
    assert outcome.status is RunStatus.failed
    assert "module 'no_such_module_here' cannot be imported" in (outcome.error or "")


def _module(directory: Path, body: str) -> None:
    path = directory / "warm_pipeline_under_test.py"
    stamp = path.stat().st_mtime_ns + 1_000_000_000 if path.exists() else None
    path.write_text(textwrap.dedent(body))
    if stamp is not None:  # a change on disk within the same clock tick still shows
        os.utime(path, ns=(stamp, stamp))


def test_a_template_is_replaced_when_its_pipelines_code_changes_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: Path
) -> None:
    body = """
        import os
        def run(record):
            with open(record, "a") as handle:
                handle.write(f"{VERSION} {os.getppid()}\\n")
        VERSION = "%s"
    """
    record = tmp_path / "record.txt"
    _module(code, body % "v1")
    templates = Templates()
    try:
        for name in ("a", "b"):
            run(templates, tmp_path, "warm_pipeline_under_test:run", {"record": str(record)}, name).start().wait(60)
        _module(code, body % "v2")
        run(templates, tmp_path, "warm_pipeline_under_test:run", {"record": str(record)}, "c").start().wait(60)
    finally:
        templates.close()
    lines = [line.split() for line in record.read_text().splitlines()]
    assert [version for version, _ in lines] == ["v1", "v1", "v2"]
    assert lines[0][1] == lines[1][1] != lines[2][1]  # the third forked by a new template


def test_a_template_is_replaced_after_its_number_of_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", pythonpath())
    record = tmp_path / "record.jsonl"
    templates = Templates(template_runs=2)
    try:
        for n in range(3):
            run(templates, tmp_path, "pipelines_for_tests:ok", {"record": str(record)}, f"r{n}").start().wait(60)
    finally:
        templates.close()
    parents = [line["ppid"] for line in read_records(record)]
    assert parents[0] == parents[1] != parents[2]


WORKER_SCRIPT = """
import sys, time
from datetime import datetime, timezone
from pathlib import Path
from flowyml_sched.executor import ChildRun, RunRequest
from flowyml_sched.warm import Templates
templates = Templates()
assert templates.start("pipelines_for_tests:hang")
request = RunRequest("pipelines_for_tests:hang", {"seconds": 600}, datetime.now(timezone.utc), "r")
running = ChildRun(request, Path(sys.argv[1]) / "running.log").prepare(templates).start()
prepared = ChildRun(request, Path(sys.argv[1]) / "prepared.log").prepare(templates)
print(running.pid, prepared.pid, flush=True)
time.sleep(600)
"""


def test_a_worker_killed_with_sigkill_takes_its_templates_and_their_runs_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", pythonpath())
    worker = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        pids = [int(pid) for pid in worker.stdout.readline().split()]
        assert len(pids) == 2
        for pid in pids:
            os.kill(pid, 0)  # both there
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
        for pid in pids:  # the running run and the prepared one
            wait_gone(pid)
    finally:
        worker.kill()
        worker.wait()


def test_the_time_a_run_is_forked_ahead_is_learned_within_the_floor_and_the_cap() -> None:
    templates = Templates()
    assert templates.ahead("a:b") == PREPARE_FLOOR  # nothing measured yet
    for _ in range(20):
        templates.learn("a:b", 0.002)
    assert templates.ahead("a:b") == PREPARE_FLOOR  # a fork in milliseconds: the floor
    for seconds in [0.2] * 19 + [0.4]:
        templates.learn("slow:factory", seconds)
    assert templates.ahead("slow:factory") == pytest.approx(0.4 * 1.5 + 0.01)  # the 95th percentile, with margin
    templates.learn("huge:one", 3600.0)
    assert templates.ahead("huge:one") == PREPARE_CAP
    assert templates.longest_ahead() == PREPARE_CAP


def test_a_module_is_one_template_whatever_its_attribute_and_an_entry_point_is_its_own() -> None:
    assert template_key("pkg.mod:a") == template_key("pkg.mod:b.c") == "pkg.mod"
    assert template_key("nightly-etl") == "nightly-etl"
