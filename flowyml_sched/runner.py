"""Child-process entry points: a cold run, and a warm template that forks prepared runs.

``python -m flowyml_sched.runner RESULT_PATH`` (a cold run) reads one JSON request on stdin
(``pipeline``, ``params``, ``scheduled_for`` as ISO 8601, ``run_id``, ``start_by``), runs the
pipeline, and writes ``{"success", "error", "pipeline_run_id", "started"}`` to RESULT_PATH
(written to a temporary file with mode 0600, then renamed). Exit status 0 on success, 1 on
failure. Whatever the pipeline prints goes to the stdout/stderr the worker captures.

``python -m flowyml_sched.runner --template CONTROL_FD REFERENCE`` (a warm template, see
:mod:`flowyml_sched.warm`) imports the module of the pipeline REFERENCE once, reports
``{"op": "ready", "error", "files"}`` on the control socket (a ``SOCK_SEQPACKET`` Unix socket,
one JSON message a packet; ``unsafe`` when the import started threads: a fork would lose
them), then forks a prepared run for each ``{"op": "fork"}`` message,
which carries two descriptors: the run's output (its stdout and stderr) and its channel. It
answers ``{"op": "forked", "pid"}`` at once and ``{"op": "exited", "pid", "status"}`` (a
``waitpid`` status) when the run's process ends. ``{"op": "retire"}`` makes it leave once its
last run has ended; the control socket's end (the worker is gone) makes it SIGKILL its runs'
process groups and leave. It ignores SIGTERM and SIGINT: it lives as long as its worker.

A forked run is a process group of its own (``setsid``), killed with SIGKILL if its template
dies (``PR_SET_PDEATHSIG``). On its channel (a stream socket, one JSON document a line) it
reads its request (the cold run's, plus ``env`` and ``result_path``), resolves the pipeline
and binds its arguments (a flowyml ``Pipeline``'s factory is called when the run starts, as
in a cold run), answers ``ready <time.monotonic()>`` and waits. The line ``{"start_by", "at"}``
releases it: the pipeline's first line runs at ``at`` (a ``time.monotonic()`` instant; at
once when null), so the worker can release it a few milliseconds ahead, right after the
fenced start, and the wake-up of a process is not on the instant's path. The channel's end before that line
cancels it: it leaves without running anything, and writes no result.

``start_by`` is a ``time.monotonic()`` instant (one clock for every process of the host): past
it, once the pipeline is loaded, the pipeline is not called (``started`` false). The worker's
lease may have run out while it was stalled after recording the start, and another worker
may have taken the run over.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, NoReturn

STALLED = "the worker stalled past its lease while recording this run's start or before starting it"
"""The error of an attempt whose start was recorded but not made in time: its lease may have run out."""

SPIN = 0.001
"""Seconds before its instant at which a released run stops sleeping and yields the CPU until then."""
CONTROL_BUFFER = 64 * 1024
"""Bytes read for one control message (a few hundred are sent)."""
MAX_WATCHED_FILES = 500
"""How many of the files a template imported it reports for the worker to watch for changes."""


def private_opener(path: str, flags: int) -> int:
    """An ``open(..., opener=)`` that creates the file with mode 0600 (and makes an existing one
    0600), so that no moment leaves a run's output readable by others, not even a kill -9."""
    descriptor = os.open(path, flags, 0o600)
    os.fchmod(descriptor, 0o600)
    return descriptor


def _prepared_call(request: dict[str, Any]) -> Callable[[], Any]:
    """Resolve the request's pipeline and bind its arguments: a call returning its
    :class:`~flowyml_sched.pipelines.PipelineResult` (one that fails when it was not found)."""
    from flowyml_sched.errors import PipelineNotFound
    from flowyml_sched.pipelines import PipelineResult, prepare_target, resolve

    try:
        target = resolve(request["pipeline"])
    except PipelineNotFound as exc:
        error = str(exc)
        return lambda: PipelineResult(False, error)
    return prepare_target(
        target, request["params"], datetime.fromisoformat(request["scheduled_for"]), request["run_id"]
    )


def _run_and_report(call: Callable[[], Any], start_by: float | None, result_path: str) -> int:
    """Run ``call`` unless ``start_by`` has passed, write the result file, return the exit status."""
    from flowyml_sched.pipelines import PipelineResult

    started = start_by is None or time.monotonic() <= start_by
    result = call() if started else PipelineResult(False, STALLED)
    sys.stdout.flush()
    sys.stderr.flush()
    temporary = f"{result_path}.tmp"
    with open(temporary, "w", encoding="utf-8", opener=private_opener) as handle:
        json.dump(
            {
                "success": result.success,
                "error": result.error,
                "pipeline_run_id": result.pipeline_run_id,
                "started": started,
            },
            handle,
        )
    os.replace(temporary, result_path)
    return 0 if result.success else 1


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[1] == "--template":
        return serve_template(int(argv[2]), argv[3])
    request = json.loads(sys.stdin.read())
    return _run_and_report(_prepared_call(request), request.get("start_by"), argv[1])


@contextlib.contextmanager
def _gone_with_worker(control: socket.socket) -> Iterator[None]:
    """While the block runs (the pipeline's import), leave at once if the worker goes: before
    ``ready`` the worker sends nothing, so the control socket turns readable only at its end
    (the worker died or closed it). The watching thread is gone when the block ends."""
    import select

    stop_r, stop_w = os.pipe()

    def watch() -> None:
        ready, _, _ = select.select([control, stop_r], [], [])
        if control in ready:
            os._exit(1)

    watcher = threading.Thread(target=watch, name="worker-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        os.write(stop_w, b"x")
        watcher.join()
        os.close(stop_r)
        os.close(stop_w)


def _watched_files(before: set[str], reference: str, target: Any) -> list[tuple[str, int, int]]:
    """``(path, st_mtime_ns, st_ino)`` of the source files whose change on disk calls for a
    new template: the pipeline's own module (wherever it is installed: an upgrade replaces
    it), and the modules imported since ``before`` that are not the interpreter's or an
    installed package's."""
    installed = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    own = {reference.partition(":")[0] if ":" in reference else "", getattr(target, "__module__", None) or ""}
    paths = {getattr(sys.modules.get(name), "__file__", None) for name in own if name}
    for name in set(sys.modules) - before:
        path = getattr(sys.modules.get(name), "__file__", None)
        if path and path.endswith(".py") and not any(path.startswith(prefix) for prefix in installed):
            paths.add(path)
    files = []
    for path in sorted(p for p in paths if p):
        try:
            status = os.stat(path)
        except OSError:
            continue
        files.append((path, status.st_mtime_ns, status.st_ino))
    return files[:MAX_WATCHED_FILES]


def serve_template(control_fd: int, reference: str) -> int:
    """A warm template (see the module's docstring): serve fork requests on ``control_fd``.
    Returns the template's exit status, or in a forked run that run's."""
    import ctypes
    import gc
    import selectors

    from flowyml_sched.errors import PipelineNotFound
    from flowyml_sched.pipelines import format_error, resolve

    control = socket.socket(fileno=control_fd)
    before = set(sys.modules)
    error = None
    target = None
    with _gone_with_worker(control):  # an import that hangs must not outlive the worker
        try:
            target = resolve(reference)
        except PipelineNotFound as exc:
            error = str(exc)
        except BaseException as exc:  # reported: the worker runs this pipeline cold, as before
            error = format_error(exc)
    if error is None and threading.active_count() > 1:
        names = ", ".join(sorted(t.name for t in threading.enumerate() if t is not threading.current_thread()))
        error = (
            f"importing it started threads ({names}), which a forked run would not have: its runs start "
            "in fresh interpreters"
        )
    unsafe = error is not None and target is not None  # it imports, but cannot be forked
    files = _watched_files(before, reference, target)
    control.send(json.dumps({"op": "ready", "error": error, "unsafe": unsafe, "files": files}).encode())
    if error is not None:
        return 1
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # from here it lives as long as its control socket
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded once here, not in every run
    gc.freeze()  # what the template holds is out of its runs' collections: fewer pages copied
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    children: set[int] = set()
    retiring = False
    while not (retiring and not children):
        for key, _ in selector.select():
            if key.fileobj is control:
                message, fds, _flags, _address = socket.recv_fds(control, CONTROL_BUFFER, 2)
                if not message:  # the worker is gone: so are its runs
                    for pid in children:
                        _kill_group(pid)
                    return 0
                op = json.loads(message)["op"]
                if op == "retire":
                    retiring = True
                    continue
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    for fd in (wake_r, wake_w):
                        os.close(fd)
                    control.close()
                    return _forked_run(prctl, *fds)
                children.add(pid)
                for fd in fds:
                    os.close(fd)
                control.send(json.dumps({"op": "forked", "pid": pid}).encode())
            else:
                while True:
                    try:
                        if not os.read(wake_r, 4096):
                            break
                    except BlockingIOError:
                        break
            while children:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                children.discard(pid)
                control.send(json.dumps({"op": "exited", "pid": pid, "status": status}).encode())
    return 0


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _forked_run(prctl: Callable[..., int], output_fd: int, channel_fd: int) -> int:
    """In a run forked by a template: become a process group of its own, read the request,
    prepare, say so, and run once released (see the module's docstring). ``prctl`` is libc's."""
    os.setsid()
    prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG: dies with its template
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.close(output_fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    channel = socket.socket(fileno=channel_fd)
    lines = channel.makefile("rb")
    first = lines.readline()
    if not first:
        return 0  # cancelled before it was asked for anything
    request = json.loads(first)
    os.environ.update(request["env"])
    call = _prepared_call(request)
    with contextlib.suppress(OSError):  # the worker may have released it and closed its end already
        channel.sendall(f"ready {time.monotonic()!r}\n".encode())
    try:
        release = lines.readline()
    except OSError:  # reset: the worker closed its end with our "ready" unread
        release = b""
    if not release:
        return 0  # cancelled: nothing ran
    go = json.loads(release)
    if go.get("at") is not None:
        _wait_until(go["at"])
    code = _run_and_report(call, go["start_by"], request["result_path"])
    _leave(code)


def _wait_until(instant: float) -> None:
    """Sleep until :data:`SPIN` seconds before ``instant`` (a ``time.monotonic()`` value, one
    clock for the host's processes), then yield the CPU in a loop until it: a timer wakes a
    process up to a millisecond late."""
    left = instant - time.monotonic()
    if left > SPIN:
        time.sleep(left - SPIN)
    while time.monotonic() < instant:
        os.sched_yield()


def _leave(code: int) -> NoReturn:
    """End a forked run as an interpreter ends, less the teardown of the modules it shares with
    its template (milliseconds of a run slot for nothing): wait for the threads it left that
    are not daemons, run the ``atexit`` handlers (those its modules registered when the
    template imported them, and the run's own, as a fresh interpreter would), flush the
    standard streams, and ``os._exit``."""
    import atexit

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
