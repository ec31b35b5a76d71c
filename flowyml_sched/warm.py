"""Warm templates: a run's child process forked, prepared, from a process that imported its
pipeline's module once, and released at its instant.

A :class:`Template` is a process (``python -m flowyml_sched.runner --template``, see
:mod:`flowyml_sched.runner`) started once per pipeline module (the part of a ``module:attr``
reference before the colon; an entry-point name is its own key). Forking a run from it costs
milliseconds, copy-on-write, where a fresh interpreter costs ~60 ms of CPU and an import of
numpy or pandas seconds. Each run still gets a process of its own: a process group, a timeout,
a bounded log, a crash that reaches neither the worker nor the template.

:class:`Templates` keeps them: at most :data:`MAX_TEMPLATES` (the least recently used one is
retired), each replaced after :data:`TEMPLATE_RUNS` runs (it forks on until its successor,
started in the background, is ready) or when a watched source file changed on disk (checked,
by ``stat``, before each fork). A run never waits for a template's import: without a ready
template it starts cold, and one is started in the background. A template whose pipeline
cannot be imported is not kept: its runs start cold (and fail saying why), and it is tried
again after :data:`BROKEN_RETRY` seconds; one whose import starts threads (a forked run would
not have them) is not tried again. A retired template leaves once its last run has ended. A
template lives as long as its control socket: when the worker dies, even by SIGKILL, the
socket's end makes it SIGKILL its runs and leave (while it still imports, a watching thread
ends it).

It also learns how long before its instant each pipeline's run must be forked
(:meth:`Templates.ahead`): from the measured preparation times (fork request to the run's
``ready``), the 95th percentile of the last :data:`SAMPLES` times 1.5 plus 10 ms, within
:data:`PREPARE_FLOOR` and :data:`PREPARE_CAP` seconds.

Caveats of forking (as with ``multiprocessing``'s fork and forkserver): state made at import
(a numpy random generator seeded then, an open connection) is a copy in every run. A module
whose import starts threads is never forked (the run would have only the forking thread).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flowyml_sched.references import LOCAL_PIPELINE_PREFIX
from flowyml_sched.runner import CONTROL_BUFFER

logger = logging.getLogger(__name__)

MAX_TEMPLATES = 8
"""How many templates a worker keeps at most (each holds its pipeline's imports in memory)."""
TEMPLATE_RUNS = 1000
"""Runs forked from a template before it is replaced (bounds what its runs' forks share)."""
BROKEN_RETRY = 30.0
"""Seconds before a pipeline whose template failed to import it gets a template again."""
TEMPLATE_START_TIMEOUT = 300.0
"""Seconds a template gets to import its pipeline's module before its runs start cold."""
FORK_TIMEOUT = 30.0
"""Seconds a template gets to answer a fork request (it answers in milliseconds)."""
SAMPLES = 64
"""Preparation times kept per pipeline for :meth:`Templates.ahead`."""
PREPARE_FLOOR = 0.05
"""Seconds: the least time before its instant a run is forked."""
PREPARE_CAP = 60.0
"""Seconds: the most time before its instant a run is forked."""


class TemplateGone(Exception):
    """The template process ended or did not answer: the run starts cold instead. ``unsafe``:
    it imported the pipeline's module, which started threads (a forked run would lack them)."""

    def __init__(self, reason: str, unsafe: bool = False):
        super().__init__(reason)
        self.unsafe = unsafe


def template_key(reference: str) -> str:
    """The template a pipeline reference is forked from: its module (``pkg.mod`` of
    ``pkg.mod:attr``), or the entry-point name."""
    return reference.partition(":")[0] if ":" in reference else reference


class ForkedProcess:
    """A ``subprocess.Popen``-like handle of a run forked by a template: ``pid``,
    ``returncode`` (negative: killed by that signal), ``poll()``, ``wait(timeout)`` (raises
    :class:`subprocess.TimeoutExpired`), ``stdout`` (the read end of its output), and its
    ``channel`` (the socket that releases or cancels it)."""

    def __init__(self, pid: int, stdout: Any, channel: socket.socket):
        self.pid = pid
        self.stdout = stdout
        self.channel = channel
        self.returncode: int | None = None
        self._exited = threading.Event()

    def exited(self, returncode: int) -> None:
        self.returncode = returncode
        self._exited.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(f"forked run {self.pid}", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode


@dataclass(eq=False)
class Template:
    """One template process and its control socket (see :mod:`flowyml_sched.runner`)."""

    key: str
    reference: str
    process: subprocess.Popen[bytes] | None = None
    control: socket.socket | None = None
    files: list[tuple[str, int, int]] = field(default_factory=list)
    """``(path, st_mtime_ns, st_ino)`` of the source files whose change calls for a new template."""
    forks: int = 0
    _children: dict[int, ForkedProcess] = field(default_factory=dict)
    _replies: queue.SimpleQueue[int | None] = field(default_factory=queue.SimpleQueue)
    _send: threading.Lock = field(default_factory=threading.Lock)
    _reader: threading.Thread | None = None

    def start(self) -> None:
        """Start the process and wait until it imported the pipeline's module. Raises
        :class:`TemplateGone` (with the import's error) when it could not."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flowyml_sched.runner", "--template", str(theirs.fileno()), self.reference],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        self.control = ours
        ours.settimeout(TEMPLATE_START_TIMEOUT)
        try:
            ready = json.loads(ours.recv(CONTROL_BUFFER) or b'{"error": "it exited while importing"}')
        except (OSError, ValueError) as exc:
            self.close()
            raise TemplateGone(f"the template did not start: {exc}") from None
        ours.settimeout(None)
        if ready.get("error"):
            self.close()
            raise TemplateGone(ready["error"], bool(ready.get("unsafe")))
        self.files = [(path, mtime, inode) for path, mtime, inode in ready["files"]]
        self._reader = threading.Thread(target=self._read, name=f"template-{self.key}", daemon=True)
        self._reader.start()

    def changed(self) -> bool:
        """Whether a source file it imported changed (or was replaced, or went) since it started."""
        for path, mtime, inode in self.files:
            try:
                status = os.stat(path)
                if (status.st_mtime_ns, status.st_ino) != (mtime, inode):
                    return True
            except OSError:
                return True
        return False

    def fork(self) -> ForkedProcess:
        """Fork a run: returns its handle once the template answered (its pid). Raises
        :class:`TemplateGone`."""
        out_r, out_w = os.pipe()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self._send:
                if self.control is None or self._reader is None or not self._reader.is_alive():
                    raise TemplateGone("the template has ended")
                socket.send_fds(self.control, [b'{"op": "fork"}'], [out_w, theirs.fileno()])
                self.forks += 1
                try:
                    pid = self._replies.get(timeout=FORK_TIMEOUT)
                except queue.Empty:
                    raise TemplateGone(f"the template did not answer within {FORK_TIMEOUT:g} s") from None
                if pid is None:
                    raise TemplateGone("the template has ended")
                forked = ForkedProcess(pid, os.fdopen(out_r, "rb"), ours)
                self._children[pid] = forked
                out_r = -1
                return forked
        except OSError as exc:
            raise TemplateGone(f"the template could not be reached: {exc}") from None
        finally:
            os.close(out_w)
            theirs.close()
            if out_r != -1:
                os.close(out_r)
                ours.close()

    def _read(self) -> None:
        """The reader thread: hand each ``forked`` pid to :meth:`fork`, record each exit; at
        the socket's end, every run still known is taken as killed (its template's death
        SIGKILLs it)."""
        assert self.control is not None
        pending = dict[int, int]()  # an exit reported before fork() registered its pid
        try:
            while message := self.control.recv(CONTROL_BUFFER):
                body = json.loads(message)
                if body["op"] == "forked":
                    self._replies.put(body["pid"])
                elif body["op"] == "exited":
                    code = os.waitstatus_to_exitcode(body["status"])
                    child = self._children.pop(body["pid"], None)
                    if child is None:
                        pending[body["pid"]] = code
                    else:
                        child.exited(code)
                for pid in [pid for pid in pending if pid in self._children]:
                    self._children.pop(pid).exited(pending.pop(pid))
        except (OSError, ValueError) as exc:
            logger.warning("template for %s: its control socket failed: %s", self.key, exc)
        finally:
            self._replies.put(None)
            for pid in list(self._children):  # the template died: its runs died with it (PR_SET_PDEATHSIG)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)  # and what they left in their groups
                self._children.pop(pid).exited(pending.pop(pid, -signal.SIGKILL))

    def retire(self) -> None:
        """Fork nothing more; the process leaves once its last run has ended."""
        with self._send, contextlib.suppress(OSError):
            if self.control is not None:
                self.control.send(b'{"op": "retire"}')

    def close(self) -> None:
        """End it now: its socket closes, so it SIGKILLs its runs and leaves; reaped here."""
        if self.control is not None:
            with contextlib.suppress(OSError):
                self.control.shutdown(socket.SHUT_RDWR)
            self.control.close()
        if self.process is not None:
            try:
                self.process.wait(5.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(5.0)

    def reap_if_gone(self) -> bool:
        """True once a retired template's process has left (it is then reaped)."""
        return self.process is not None and self.process.poll() is not None


class Templates:
    """A worker's templates, by :func:`template_key`, and what it learned of each pipeline's
    preparation time. Safe to use from any thread."""

    def __init__(self, max_templates: int = MAX_TEMPLATES, template_runs: int = TEMPLATE_RUNS):
        self.max_templates = max_templates
        self.template_runs = template_runs
        self._live: OrderedDict[str, Template] = OrderedDict()
        self._retired: list[Template] = []
        self._broken: dict[str, float] = {}
        self._starting: dict[str, threading.Event] = {}
        self._importing: set[Template] = set()
        self._prepare_times: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def fork(self, reference: str) -> ForkedProcess | None:
        """Fork a run of ``reference`` from its template; None when it has none ready (a
        callable registered in a process, a template still importing, one whose import
        failed, one that died): the run then starts cold, and a template is started in the
        background for the runs after it. Never waits for an import."""
        if reference.startswith(LOCAL_PIPELINE_PREFIX):
            return None
        with self._lock:
            template, worn = self._current(template_key(reference))
        if template is None or worn:  # a worn one forks on until its successor is ready
            self._start_in_background(reference)
        if template is None:
            return None
        try:
            return template.fork()
        except TemplateGone as exc:
            logger.warning("template for %s: %s; its runs start cold until a new one is ready", template.key, exc)
            self._drop(template)
            self._start_in_background(reference)
            return None

    def start(self, reference: str) -> bool:
        """Start the template of ``reference`` now, unless it has a current one, and wait
        until it is ready (or could not start): True when it has one."""
        return self._start(reference) is not None

    def warm(self, references: Iterable[str]) -> threading.Thread:
        """Start the templates of ``references`` (at most :attr:`max_templates`) in a
        background thread, so that their first runs start on time too; returns the thread."""
        wanted = list(dict.fromkeys(r for r in references if not r.startswith(LOCAL_PIPELINE_PREFIX)))
        keys = list(dict.fromkeys(template_key(r) for r in wanted))[: self.max_templates]
        chosen = [next(r for r in wanted if template_key(r) == key) for key in keys]

        def start_all() -> None:
            for reference in chosen:
                self._start(reference)

        thread = threading.Thread(target=start_all, name="templates-warm", daemon=True)
        thread.start()
        return thread

    def _current(self, key: str) -> tuple[Template | None, bool]:
        """(Under the lock.) The live template of ``key`` unless its code changed (then it is
        retired here), and whether it is worn (it ran :attr:`template_runs` runs): it is
        used until its successor is ready, which then retires it."""
        template = self._live.get(key)
        if template is None or self._closed:
            return None, False
        if template.changed():
            logger.info("template for %s: replaced (its code changed)", key)
            self._retire(self._live.pop(key))
            return None, False
        self._live.move_to_end(key)
        return template, template.forks >= self.template_runs

    def _blocked(self, key: str) -> bool:
        """(Under the lock.) Whether ``key`` gets no template now: closed, started already,
        its import failed lately, or its import starts threads (never, then)."""
        return self._closed or key in self._starting or time.monotonic() < self._broken.get(key, 0.0)

    def _start_in_background(self, reference: str) -> None:
        key = template_key(reference)
        with self._lock:
            if self._blocked(key):
                return
        threading.Thread(target=self._start, args=(reference,), name=f"template-start-{key}", daemon=True).start()

    def _start(self, reference: str) -> Template | None:
        key = template_key(reference)
        while True:
            with self._lock:
                template, worn = self._current(key)
                if (template is not None and not worn) or self._closed or time.monotonic() < self._broken.get(key, 0.0):
                    return template
                starting = self._starting.get(key)
                if starting is None:
                    starting = self._starting[key] = threading.Event()
                    break
            starting.wait()  # another thread starts it: take what it made
        template = Template(key, reference)
        began = time.monotonic()
        with self._lock:
            self._importing.add(template)  # close() ends it even while it imports
        try:
            template.start()
        except TemplateGone as exc:
            again = "never (for this worker)" if exc.unsafe else f"in {BROKEN_RETRY:g} s"
            if not self._closed:  # else close() ended it while it imported
                logger.warning("template for %s: %s; its runs start cold (it is tried again %s)", key, exc, again)
            with self._lock:
                self._importing.discard(template)
                self._broken[key] = float("inf") if exc.unsafe else time.monotonic() + BROKEN_RETRY
                self._starting.pop(key).set()
            return None
        logger.info("template for %s started in %.3f s", key, time.monotonic() - began)
        with self._lock:
            self._importing.discard(template)
            self._starting.pop(key).set()
            if self._closed:
                template.close()
                return None
            worn_out = self._live.pop(key, None)
            if worn_out is not None:
                logger.info("template for %s: replaced (%d runs)", key, worn_out.forks)
                self._retire(worn_out)
            self._live[key] = template
            while len(self._live) > self.max_templates:
                self._retire(self._live.popitem(last=False)[1])
            self._retired = [old for old in self._retired if not old.reap_if_gone()]
        return template

    def _retire(self, template: Template) -> None:
        template.retire()
        self._retired.append(template)

    def _drop(self, template: Template) -> None:
        with self._lock:
            if self._live.get(template.key) is template:
                del self._live[template.key]
        template.close()

    def learn(self, reference: str, seconds: float) -> None:
        """Record that a run of ``reference`` took ``seconds`` from its fork request to ready
        (a lower bound when it was not ready at its instant)."""
        with self._lock:
            self._prepare_times.setdefault(reference, deque(maxlen=SAMPLES)).append(seconds)

    def ahead(self, reference: str) -> float:
        """Seconds before its instant a run of ``reference`` is forked (see the module)."""
        with self._lock:
            times = sorted(self._prepare_times.get(reference, ()))
        if not times:
            return PREPARE_FLOOR
        high = times[min(len(times) - 1, int(len(times) * 0.95))]
        return min(PREPARE_CAP, max(PREPARE_FLOOR, high * 1.5 + 0.01))

    def longest_ahead(self) -> float:
        """The largest :meth:`ahead` of the pipelines measured so far (seconds)."""
        with self._lock:
            references = list(self._prepare_times)
        return max((self.ahead(r) for r in references), default=PREPARE_FLOOR)

    def close(self) -> None:
        """End every template (their runs, if any are left, are SIGKILLed)."""
        with self._lock:
            self._closed = True
            templates = [*self._live.values(), *self._retired, *self._importing]
            self._live.clear()
            self._retired = []
        for template in templates:
            template.close()
