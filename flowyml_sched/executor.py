"""Run one pipeline once, in a child process (default) or in this process, with a timeout.

Knows nothing of schedules, stores or locks: a :class:`RunRequest` goes in, an
:class:`Outcome` comes out. In a child process, a crashing, hanging or leaking pipeline
cannot take the worker down: a timeout sends SIGTERM to the child's whole process group,
then SIGKILL after :data:`KILL_GRACE_SECONDS`. Output (stdout and stderr together) goes
to a log file, cut at ``max_log_bytes``. A child is either forked ahead of its start from
its pipeline's warm template (:meth:`ChildRun.prepare`, :mod:`flowyml_sched.warm`) and
released at its instant, or, without one, a fresh interpreter started then.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from flowyml_sched.config import DEFAULT_MAX_LOG_BYTES
from flowyml_sched.model import RunStatus
from flowyml_sched.references import LOCAL_PIPELINE_PREFIX
from flowyml_sched.runner import STALLED, private_opener
from flowyml_sched.warm import ForkedProcess, Templates

logger = logging.getLogger(__name__)

KILL_GRACE_SECONDS = 10.0
"""Seconds between SIGTERM and SIGKILL when a run is stopped (timeout, replace, shutdown)."""

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class RunRequest:
    """What to run: the pipeline reference, its params, the fire time (aware UTC) and our run
    id; for a child run's environment (:meth:`environment`), the schedule, the attempt and
    the id of the worker that started it; ``start_by``, the ``time.monotonic()`` instant after
    which a child must not start the pipeline (the worker's lease may have run out: the run
    ends ``interrupted`` with :data:`STALLED`), None for no limit."""

    pipeline: str
    params: dict[str, Any]
    scheduled_for: datetime
    run_id: str
    schedule: str = ""
    attempt: int = 1
    worker: str = ""
    start_by: float | None = None

    def environment(self) -> dict[str, str]:
        """The variables a child run finds in its environment, besides the worker's own."""
        return {
            "FLOWYML_SCHED_SCHEDULE": self.schedule,
            "FLOWYML_SCHED_SCHEDULED_FOR": self.scheduled_for.isoformat(),
            "FLOWYML_SCHED_ATTEMPT": str(self.attempt),
            "FLOWYML_SCHED_WORKER": self.worker,
            "FLOWYML_SCHED_RUN_ID": self.run_id,
        }


@dataclass(frozen=True)
class Outcome:
    """How a run ended: a final :class:`RunStatus`, an error text, the pipeline's run id, and
    for a run in this process what the pipeline raised."""

    status: RunStatus
    error: str | None = None
    pipeline_run_id: str | None = None
    exception: BaseException | None = field(default=None, compare=False)


@dataclass
class ChildRun:
    """A pipeline running in a child process; :meth:`wait` blocks until it ends.

    ``stop(status)`` (from any thread) ends it early: SIGTERM to its process group, then
    SIGKILL after the grace; the outcome then carries ``status`` (``timed_out``,
    ``interrupted`` or ``failed`` for a replaced run).
    """

    request: RunRequest
    log_path: Path
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES
    kill_grace: float = KILL_GRACE_SECONDS
    _process: subprocess.Popen[bytes] | ForkedProcess | None = field(default=None, init=False, repr=False)
    _templates: Templates | None = field(default=None, init=False, repr=False)
    _requested: float = field(default=0.0, init=False, repr=False)
    _stopped_as: tuple[RunStatus, str] | None = field(default=None, init=False, repr=False)
    _pump: threading.Thread | None = field(default=None, init=False, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._result_path = self.log_path.with_suffix(".result.json")

    def prepare(self, templates: Templates | None) -> ChildRun:
        """Fork the run ahead of its start from its pipeline's warm template
        (:mod:`flowyml_sched.warm`): the child resolves the pipeline, binds its arguments and
        waits for :meth:`start`. Without a template to be had (or ``templates`` None),
        :meth:`start` starts a fresh interpreter, as without this call."""
        if templates is None or self.request.pipeline.startswith(LOCAL_PIPELINE_PREFIX):
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        forked = templates.fork(self.request.pipeline)  # the first of a template waits for its start
        if forked is None:
            return self
        requested = time.monotonic()  # the preparation counted from here: the fork itself takes ~1 ms
        request = {
            **self._request_document(),
            "env": self.request.environment(),
            "result_path": str(self._result_path),
        }
        with contextlib.suppress(OSError):  # a child that died already is found by wait()
            forked.channel.sendall(json.dumps(request).encode() + b"\n")
        with self._guard:
            self._process = forked
            self._templates, self._requested = templates, requested
        self._start_pump()
        return self

    @property
    def prepared(self) -> bool:
        """Whether :meth:`prepare` forked a child that waits for its release."""
        return isinstance(self._process, ForkedProcess) and self._process.poll() is None

    def start(self, start_by: float | None = None, at: float | None = None) -> ChildRun:
        """Start the run: release the child :meth:`prepare` forked (its pipeline's first line
        runs at ``at``, a ``time.monotonic()`` instant, or now), else start a fresh
        interpreter for it now. ``start_by`` (a ``time.monotonic()`` instant) replaces the
        request's."""
        start_by = self.request.start_by if start_by is None else start_by
        if isinstance(self._process, ForkedProcess):
            if self._process.poll() is None or self._stopped_as is not None:
                self._release(self._process, start_by, at)
                return self
            # the prepared child died before its start (its template was killed): nothing of it
            # ran, so the run starts cold instead
            logger.warning("run %s: its prepared child died before its start; starting it cold", self.request.run_id)
            self._process.channel.close()
            if self._pump is not None:
                self._pump.join()
            self._process = None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._guard:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "flowyml_sched.runner", str(self._result_path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env={**os.environ, **self.request.environment()},
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
            stopped_early = self._stopped_as is not None
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps({**self._request_document(), "start_by": start_by}).encode())
            self._process.stdin.close()
        except BrokenPipeError:
            logger.warning("run %s: the child process exited before reading its request", self.request.run_id)
        self._start_pump()
        if stopped_early:  # stop() came while the child was being started
            self._terminate()
        return self

    def cancel(self) -> None:
        """End a prepared run that is not to start: its channel closes, so it leaves without
        running anything (a run that was not prepared has nothing to end). Its log file,
        empty unless its preparation printed, goes too when empty."""
        process = self._process
        if not isinstance(process, ForkedProcess):
            return
        process.channel.close()
        try:
            process.wait(self.kill_grace)
        except subprocess.TimeoutExpired:  # stuck in its preparation
            self._signal(signal.SIGKILL)
            process.wait()
        if self._pump is not None:
            self._pump.join()
        with contextlib.suppress(OSError):
            if self.log_path.stat().st_size == 0:
                self.log_path.unlink()
        with contextlib.suppress(OSError):
            self._result_path.unlink()

    def _release(self, process: ForkedProcess, start_by: float | None, at: float | None) -> None:
        if self._stopped_as is not None:  # stopped before its start: it never runs
            process.channel.close()
            return
        try:
            process.channel.sendall(json.dumps({"start_by": start_by, "at": at}).encode() + b"\n")
        except OSError:
            logger.warning("run %s: the prepared child exited before its start", self.request.run_id)
        self._learn_preparation(process)

    def _learn_preparation(self, process: ForkedProcess) -> None:
        """Tell the templates how long this run took from its fork request to ``ready``: as
        answered when it was, else (it is late) at least until now."""
        assert self._templates is not None
        prepared = time.monotonic() - self._requested
        process.channel.setblocking(False)
        with contextlib.suppress(OSError, ValueError):
            answer = process.channel.recv(64)
            if answer.startswith(b"ready "):
                prepared = float(answer.split()[1]) - self._requested
        self._templates.learn(self.request.pipeline, prepared)
        process.channel.close()  # it reads nothing more

    def _request_document(self) -> dict[str, Any]:
        return {
            "pipeline": self.request.pipeline,
            "params": self.request.params,
            "scheduled_for": self.request.scheduled_for.isoformat(),
            "run_id": self.request.run_id,
        }

    def _start_pump(self) -> None:
        self._pump = threading.Thread(target=self._copy_output, name=f"log-{self.request.run_id}", daemon=True)
        self._pump.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def wait(self, timeout: float | None = None) -> Outcome:
        """Block until the run ends, stopping it as ``timed_out`` after ``timeout`` seconds.

        The run is its whole process group: when the child has exited, what it left behind
        in its group (a background process still holding the output pipe) gets SIGTERM,
        then SIGKILL after the grace, so a run always ends and its timeout always holds.
        """
        assert self._process is not None, "start() first"
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(RunStatus.timed_out, f"timed out after {timeout:g} s")
            self._process.wait()
        if self._pump is not None:
            remaining = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            self._pump.join(remaining)
            if self._pump.is_alive():  # leftovers in the group keep the output pipe open
                if deadline is not None and time.monotonic() >= deadline and self._stopped_as is None:
                    self._stopped_as = (RunStatus.timed_out, f"timed out after {timeout:g} s")
                self._signal(signal.SIGTERM)
                self._pump.join(self.kill_grace)
                self._signal(signal.SIGKILL)
                self._pump.join()
        return self._outcome()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called (or a timeout ended it)."""
        return self._stopped_as is not None

    def stop(self, status: RunStatus, reason: str) -> None:
        """End the run: SIGTERM to the process group, SIGKILL after the grace. Safe to call
        twice, and before :meth:`start` (the child is then stopped as soon as it exists)."""
        with self._guard:
            if self._process is not None and self._process.poll() is not None:
                if self._pump is None or not self._pump.is_alive():
                    return  # the run is over, group and all
                if self._stopped_as is None:
                    self._stopped_as = (status, reason)
                self._terminate()  # the leader is gone but its group still holds the output
                return
            if self._stopped_as is None:
                self._stopped_as = (status, reason)
            if self._process is None:
                return
        self._terminate()

    def _terminate(self) -> None:
        self._signal(signal.SIGTERM)
        threading.Thread(target=self._kill_later, name=f"kill-{self.request.run_id}", daemon=True).start()

    def _kill_later(self) -> None:
        assert self._process is not None
        started = time.monotonic()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=self.kill_grace)
        pump = self._pump
        if pump is not None and pump.ident is not None:  # the rest of the group gets the same grace
            pump.join(max(0.0, self.kill_grace - (time.monotonic() - started)))
        # SIGKILL what is left of the group, leader or not; a group with a member still
        # holding the output pipe (or a live leader) cannot have had its id reused
        if self._process.poll() is None or (self._pump is not None and self._pump.is_alive()):
            self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signum)

    def _copy_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        written = dropped = 0
        with open(self.log_path, "wb", opener=private_opener) as log:
            while chunk := self._process.stdout.read1(_CHUNK):
                room = self.max_log_bytes - written
                if room > 0:
                    log.write(chunk[:room])
                    written += min(room, len(chunk))
                dropped += max(0, len(chunk) - max(room, 0))
            if dropped:
                log.write(
                    f"\n[flowyml-sched: {dropped} more bytes of output dropped at the {self.max_log_bytes}-byte limit]\n".encode()
                )

    def _outcome(self) -> Outcome:
        assert self._process is not None
        code = self._process.returncode
        result: dict[str, Any] | None = None
        try:
            result = json.loads(self._result_path.read_text(encoding="utf-8"))
            self._result_path.unlink()
        except (OSError, ValueError):
            result = None
        if self._stopped_as is not None:
            status, reason = self._stopped_as
            return Outcome(status, reason, result.get("pipeline_run_id") if result else None)
        if result is not None:
            if result.get("started") is False:
                return Outcome(RunStatus.interrupted, result.get("error") or STALLED)
            if result["success"] and code == 0:
                return Outcome(RunStatus.succeeded, None, result.get("pipeline_run_id"))
            return Outcome(
                RunStatus.failed, result.get("error") or f"exited with status {code}", result.get("pipeline_run_id")
            )
        if code is not None and code < 0:
            return Outcome(RunStatus.failed, f"the run's process was killed by {signal.Signals(-code).name}")
        return Outcome(RunStatus.failed, f"the run's process exited with status {code} before reporting a result")


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL it when the worker thread that
    started it dies (prctl PR_SET_PDEATHSIG), so a worker killed with -9 leaves no orphan
    running a fire time that another worker may retry."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def prepare_in_process(request: RunRequest, target: Any = None) -> Callable[[], Outcome]:
    """Resolve the pipeline (or take ``target``, a callable or flowyml ``Pipeline`` registered
    in this process) and bind its arguments now; the returned call runs it in this process
    and thread (no timeout can stop it: see :func:`call_with_timeout`) and never raises for
    the pipeline's errors. A pipeline that cannot be found fails when called."""
    from flowyml_sched.errors import PipelineNotFound
    from flowyml_sched.pipelines import prepare_target, resolve

    if target is None:
        try:
            target = resolve(request.pipeline)
        except PipelineNotFound as exc:
            error = str(exc)
            return lambda: Outcome(RunStatus.failed, error)
    prepared = prepare_target(target, request.params, request.scheduled_for, request.run_id)

    def call() -> Outcome:
        started = time.monotonic()
        result = prepared()
        logger.debug("in-process run %s took %.3f s", request.run_id, time.monotonic() - started)
        status = RunStatus.succeeded if result.success else RunStatus.failed
        return Outcome(status, result.error, result.pipeline_run_id, result.exception)

    return call


TIMEOUT_STOP_WAIT = 1.0
"""Seconds a timed-out in-process run gets to end once :class:`TimeoutError` was raised in its thread."""


def call_with_timeout(call: Callable[[], Outcome], timeout: float | None, name: str) -> Outcome:
    """Run ``call`` (from :func:`prepare_in_process`) in this process, stopped as far as a
    thread can be after ``timeout`` seconds: in a thread of its own, named ``name``, in which
    :class:`TimeoutError` is then raised (``PyThreadState_SetAsyncExc``: Python code stops at
    its next line; a call blocked in C, a ``sleep`` or a socket read, only once it returns).
    The outcome is then ``timed_out``, and says so when the thread still runs after
    :data:`TIMEOUT_STOP_WAIT` seconds (it cannot be killed). Without ``timeout``, ``call``
    runs in the calling thread."""
    if timeout is None:
        return call()
    done: list[Outcome] = []
    thread = threading.Thread(target=lambda: done.append(call()), name=name, daemon=True)
    thread.start()
    thread.join(timeout)
    if not thread.is_alive():
        return done[0]
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident or 0), ctypes.py_object(TimeoutError))
    thread.join(TIMEOUT_STOP_WAIT)
    still = "" if not thread.is_alive() else "; its thread did not stop (blocked outside Python code) and runs on"
    return Outcome(RunStatus.timed_out, f"timed out after {timeout:g} s{still}")
