"""The worker: claims due fire times from the store and runs each exactly once.

``Worker.tick(now)`` does one round and takes "now" as an argument; ``Worker.run()`` is the
thin loop around it that reads the clock and sleeps until the earliest due fire time (less
the claim-ahead) or the next heartbeat, whichever comes first. It wakes at once on a signal,
a finished run, or a change to the schedules or the sync file: the store's change watch and
an inotify watch on the sync file give descriptors to sleep on. Where they cannot (no inotify,
in-memory SQLite), and after a failed round, it also wakes every poll interval to look.

On time: a round claims the fire times due within ``claim_ahead`` seconds (0.1 by default,
like Quartz's fire-ahead window), so the claim's commit (a disk flush) is done when they are
due; each run then waits for its fire time and starts then, never before. A child run is
forked ahead, prepared, from its pipeline's warm template (:mod:`flowyml_sched.warm`), and
the window grows to cover how long that takes. A pause or removal made before a claimed fire
time's instant stops it at its fenced start (recorded ``skipped``).

Exactly once: a fire time is claimed by inserting its run row, unique on (schedule,
scheduled_for), in the same transaction that moves the schedule's next fire time past the
round's horizon (now + claim-ahead). A worker that loses the race skips quietly. A claimed
run is owned by its worker, whose heartbeat renews a lease; when the lease expires any live
worker marks the run ``abandoned`` and retries it if the schedule has retries left. The fire
times of one schedule claimed in one round (catch-up after downtime) run one after the
other, oldest first.

Shutdown has two stages: the first SIGTERM/SIGINT stops claiming and gives running work
``grace`` seconds, then stops what remains and records it ``interrupted``; a second signal
stops everything at once.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flowyml_sched.clock import utc_now
from flowyml_sched.config import WorkerSettings
from flowyml_sched.errors import StoreError
from flowyml_sched.locks import LockBackend
from flowyml_sched.model import EVERY_REFERENCE, Claim, ClaimScope, Overlap, RunOrigin, RunStatus
from flowyml_sched.sdnotify import Notifier
from flowyml_sched.store import ScheduleStore
from flowyml_sched.warm import PREPARE_FLOOR, Templates
from flowyml_sched.worker.events import Listener, RunClaimed, RunMissed, RunsAbandoned, log_event
from flowyml_sched.worker.execution import FENCE_RETRY_FIRST, RunExecution
from flowyml_sched.worker.parts import LocalPipeline, Maintenance, logger
from flowyml_sched.worker.syncfile import SyncFile
from flowyml_sched.worker.wakeup import Wakeup

START_GUARD = 0.02
"""Seconds before the start of a run claimed ahead in which the loop starts no round: a round's
Python work holds the GIL (the waking run would wait up to the 5 ms switch interval), and the
rounds of the host's other workers take the CPU."""
START_SETTLE = timedelta(milliseconds=1)
"""How long after that start the round waits."""
STOP_FLUSH = 10.0
"""Seconds after the grace period for which a stopping worker tries to write what it could not
record while the store was unreachable (grace 30 s + 10 s stays below systemd's 45 s)."""
LOCKS_DOWN_DELAY = timedelta(seconds=2)
"""How late after their instant a worker whose lock backend is unusable claims fire times."""
RETENTION_INTERVAL = 3600.0
"""Seconds between history pruning rounds."""


class Worker(RunExecution):
    """Claims and runs due fire times. Build one per process; call :meth:`run` or :meth:`tick`.

    Its parts, one concern each: this module holds the loop, its rounds and wake-ups and the
    shutdown; :mod:`~flowyml_sched.worker.leases` the lease and heartbeats;
    :mod:`~flowyml_sched.worker.execution` running the claims (overlap, fenced starts,
    retries); :mod:`~flowyml_sched.worker.syncfile` the sync file. ``listeners`` hear its
    :mod:`~flowyml_sched.worker.events` (by default, the log).

    ``scope`` says which schedules it claims (by default every one whose pipeline any
    process can load); ``callables`` maps schedule names to pipelines registered in this
    process (:data:`~flowyml_sched.worker.parts.LocalPipeline`), which run here, in a thread,
    whatever ``settings.in_process`` says. Both may be replaced or changed while it serves:
    each round reads them.
    """

    def __init__(
        self,
        store: ScheduleStore,
        locks: LockBackend,
        settings: WorkerSettings,
        *,
        clock: Callable[[], datetime] = utc_now,
        notifier: Notifier | None = None,
        sync: Callable[[Path, datetime], None] | None = None,
        listeners: Sequence[Listener] = (log_event,),
        scope: ClaimScope = EVERY_REFERENCE,
        callables: Mapping[str, LocalPipeline] | None = None,
    ):
        if settings.log_dir is None and not settings.in_process:
            raise ValueError("a worker that runs pipelines in child processes needs WorkerSettings.log_dir")
        self.store = store
        self.locks = locks
        self.settings = settings
        self.clock = clock
        self.notifier = notifier or Notifier({})
        self.listeners = listeners
        self.scope = scope
        self.callables = callables if callables is not None else {}
        self.templates = Templates() if settings.warm_templates and not settings.in_process else None
        self._lease_lock = threading.Lock()
        self.identity = self._incarnation(clock())
        self._stopping = threading.Event()
        self.serving = threading.Event()
        """Set once :meth:`run` has stored its first heartbeat (its lease) and serves."""
        self._serving = False
        self._stop_now = threading.Event()
        self._no_starts = threading.Event()
        self._drain_deadline = None
        self._wake = Wakeup()
        self._mutex = threading.Lock()
        self._idle = threading.Condition(self._mutex)
        self._active = {}
        self._lost_ids = set()
        self._jobs = queue.SimpleQueue()
        self._busy = 0
        self._runners = []
        self._waiting_runners = 0
        self._maintenance = Maintenance()
        self._watch = store.change_watch()
        self._sync_file = SyncFile(settings.sync_file, sync) if settings.sync_file and sync else None
        self._due: tuple[datetime | None] | None = None
        """The earliest due fire time as last read, while the watch says it still holds; None: read again."""
        self._backlog = False
        """The last claim round took as many schedules as it could: more may be due already."""
        self._claimed = False
        """Whether the last round claimed anything."""
        self._unconfirmed = False
        """(The loop's thread only.) A write that claims failed: it may have committed all the same (the connection lost
        at its COMMIT), leaving claims in the store this worker does not know of."""
        self._claim_ahead = timedelta(seconds=settings.claim_ahead)
        """Rounds claim fire times due by now + this; ``run(once=True)`` claims only due ones."""
        self._held = {}
        self._last_due: datetime | None = None
        """The earliest due time as last read (kept when ``_due`` is invalidated)."""
        self._claimed_ahead: list[datetime] = []
        """Earlier due times that later reads moved past: claimed, their runs start then."""
        self._kept = set()
        self._look_at_running = False
        """The store changed since the last look at whether the runs going were stopped elsewhere."""

    def tick(self, now: datetime) -> list[Claim]:
        """One round at ``now``: heartbeat and reap if due, apply the sync file if it changed,
        claim the fire times due by ``now`` + ``claim_ahead`` up to the free capacity and start
        them (each at its fire time), and record the runs that finished meanwhile (in the
        claim's transaction when there is one). Returns the claims."""
        self._maintain(now)
        if self._look_at_running:  # the store changed: perhaps a run of this worker was stopped elsewhere
            self._look_at_running = False
            self._stop_stopped_elsewhere()
        claims = self._claim(now)
        self.store.record_queued_finishes()
        return claims

    def _claim(self, now: datetime) -> list[Claim]:
        self._claimed = False
        if self._stopping.is_set():
            return []
        with self._mutex:
            free = self.settings.max_concurrent - self._busy
        if free <= 0:
            return []
        # an idle round reads nothing while the watch sees no change; the write transaction
        # only when something is due: as last read (the claim reads again, under the lock),
        # or left behind by the last round (its limit was the free capacity), or when the
        # last claim round failed (it may have stored claims all the same: this one hands
        # them over)
        until = now + self._horizon()
        unconfirmed = self._unconfirmed
        known = self._due[0] if self._due is not None else None
        due = now if self._backlog or unconfirmed or (known is not None and known <= until) else self._earliest_due()
        if due is None or due > until:
            return []
        if not unconfirmed and self.locks.problem() is not None:  # no lock to be had: workers that can lock
            first = known if known is not None else self._earliest_due()  # claim first (_ahead)
            if first is None or first > now - LOCKS_DOWN_DELAY:
                return []
        self._due, self._backlog = None, False  # if the claim fails, the loop waits a poll, then reads
        with self._mutex:
            kept = list(self._kept)
            mine = list(self._active) if unconfirmed else None
        try:
            claimed = self.store.claim_due(
                now, self.identity, free, until=until, kept=kept, scope=self.scope, unknown_but=mine
            )
        except StoreError:
            if self.store.dialect == "postgresql":  # a server's COMMIT may go through unanswered (SQLite's is a call)
                self._unconfirmed = True  # the next round hands over what it stored all the same
            raise
        self._unconfirmed = False
        claims = claimed.claims
        for name, at, reason in claimed.missed:
            self._emit(RunMissed(name, at, reason))
        self._read_due(claimed.next_due_at)
        batches: dict[tuple[str, int], list[Claim]] = {}
        for claim in claims:
            # one schedule's fire times of one round (catch-up, or several on time) run one
            # after the other, oldest first, rather than racing for the schedule's run lock
            # (with overlap "skip" all but one would be recorded skipped), even with overlap
            # "allow"; but a backfill's run alongside each other there, as asked
            alongside = claim.schedule.policy.overlap is Overlap.allow and claim.origin is RunOrigin.backfill
            batches.setdefault((claim.schedule.name, claim.run_id if alongside else 0), []).append(claim)
        self._backlog = len(batches) >= free
        self._claimed = bool(claims)
        for batch in batches.values():
            self._start(batch)
        for claim in claims:  # reported once started, not to delay the start
            self._emit(RunClaimed(claim, now))
        return claims

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no run is going (True) or ``timeout`` seconds pass (False)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def _wait_for_capacity(self) -> None:
        """Block (keeping the lease) until a run may start or the worker is stopping."""
        while not self._stopping.is_set():
            with self._idle:
                if self._idle.wait_for(lambda: self._busy < self.settings.max_concurrent, 0.2):
                    return
            self._keep_lease()

    def _earliest_due(self) -> datetime | None:
        """The earliest due fire time: read from the store only when the watch saw a change
        (the watch is asked first, so a change committed during the read is seen next time)."""
        if self._watch.changed() or self._due is None:
            self._look_at_running = True
            self._read_due(self.store.next_due_at(self.scope))
        return self._due[0] if self._due is not None else None

    def run(self, once: bool = False) -> int:
        """Serve until stopped by a signal (or, with ``once``, until what is due now has run).

        Returns the exit status: 0 after a clean shutdown; 1 when ``once`` and its round failed.
        """
        previous = self._install_signals() if threading.current_thread() is threading.main_thread() else {}
        self._heartbeat(self.clock())
        locks_kept = threading.Event()
        if self.locks.leased:
            threading.Thread(target=self._keep_locks, args=(locks_kept,), name="lock-keeper", daemon=True).start()
        logger.info("worker %s serving %s with %s locks", self.identity.id, self.store.location, self.locks.kind)
        self.notifier.ready(f"serving {self.store.location}")
        self.serving.set()
        if self.templates is not None and self.scope.references:  # their first runs start on time too
            with contextlib.suppress(StoreError):  # else each starts with its pipeline's first run
                self.templates.warm(self.store.pipelines_due_first(self.templates.max_templates))
        failed = False
        self._serving = not once
        if once:
            self._claim_ahead = timedelta(0)
        try:
            while not self._stopping.is_set():
                if quiet := self._quiet_before_start():  # once a round: at most START_GUARD late
                    self._stop_now.wait(quiet)
                now = self.clock()
                failed = not self._round(now)
                self.notifier.watchdog()
                if once:  # claim all that is due at this instant, then wait for it (past the grace period too)
                    while not failed and not self._stopping.is_set():
                        while not failed and self._backlog and not self._stopping.is_set():
                            self._wait_for_capacity()
                            failed = not self._round(now)
                        while not self._stopping.is_set() and not self.wait_idle(0.2):
                            self._keep_lease()
                        # a backfill's next fire time comes due as the one before ends
                        if failed or not self._claimed or self._stopping.is_set():
                            break
                        failed = not self._round(now)
                    break
                self._sleep(self._sleep_seconds(failed))
        finally:
            self._shutdown()
            locks_kept.set()
            self.locks.close()
            if self.templates is not None:
                self.templates.close()
            for signum, handler in previous.items():  # the caller's, back (the Python API's start(blocking=True))
                if handler is not None:  # None: not set from Python, nothing to put back
                    signal.signal(signum, handler)
        return 1 if once and failed else 0

    def _round(self, now: datetime) -> bool:
        """:meth:`tick`, logging its failure instead of raising; True when it went through."""
        try:
            self.tick(now)
        except StoreError as exc:
            logger.error("%s; retrying in %g s", exc, self.settings.poll_interval)
            self.notifier.status(f"store unavailable: {exc}")
            return False
        except Exception:  # a bug must not end the loop while health says it runs
            logger.exception("the worker's round failed; retrying in %g s", self.settings.poll_interval)
            self.notifier.status("a round failed; see the log")
            return False
        return True

    def request_stop(self) -> None:
        """First stage: stop claiming, let running work finish within the grace period."""
        if self._stopping.is_set():
            self._stop_now.set()
            self._no_starts.set()
        self._stopping.set()
        self._wake.set()

    def request_sync(self) -> None:
        """Apply the sync file again at the next round (SIGHUP)."""
        if self._sync_file is not None:
            self._sync_file.request()
        self._wake.set()

    def _install_signals(self) -> dict[int, Any]:
        """SIGTERM and SIGINT stop, SIGHUP syncs; returns the handlers they replaced."""

        def on_stop(signum: int, _frame: object) -> None:
            logger.info("received %s", signal.Signals(signum).name)
            self.request_stop()

        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, lambda _s, _f: self.request_sync())
        return previous

    def _sleep(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds or until woken: by a signal or a finished run, or by
        a change to the schedules or the sync file. A watch that woke it is consumed here,
        whether or not the next round looks (left readable, it would wake every sleep); one
        that woke it for nothing (another table, another schema) does not end the sleep."""
        deadline = time.monotonic() + timeout
        while True:
            fds = self._watch_fds()
            store_fd, *sync_fd = fds
            woken, ready = self._wake.wait(deadline - time.monotonic(), [fd for fd in fds if fd is not None])
            # the store's watch is asked when it woke the loop, or when it must be polled or rechecked
            asked = store_fd is None or store_fd in ready or self._watch.recheck() is not None
            changed = asked and self._watch.changed()
            if changed:
                self._due, self._look_at_running = None, True
            synced = bool(sync_fd) and sync_fd[0] in ready and self._sync_file.on_readable()
            # a watch lost meanwhile (fileno None): back to the loop, which then polls
            if woken or changed or synced or None in self._watch_fds() or time.monotonic() >= deadline:
                return

    def _watch_fds(self) -> tuple[int | None, ...]:
        """The descriptors of the change watch and the sync file's watch (None: that one must be polled)."""
        return (self._watch.fileno(), *((self._sync_file.fileno(),) if self._sync_file is not None else ()))

    def _sleep_seconds(self, failed: bool = False) -> float:
        """How long the loop sleeps; after a failed round, a poll interval (a write still wakes it)."""
        watchdog = self.notifier.watchdog_seconds / 2 if self.notifier.watchdog_seconds is not None else None
        if failed:
            return min(self.settings.poll_interval, watchdog) if watchdog is not None else self.settings.poll_interval
        # never past the next heartbeat (the lease must hold), nor half the systemd watchdog's period
        poll = max(0.0, self._maintenance.heartbeat_due - time.monotonic())
        if watchdog is not None:
            poll = min(poll, watchdog)
        if None in self._watch_fds():
            poll = min(poll, self.settings.poll_interval)  # no wake-up on a change: look every poll interval
        if (recheck := self._watch.recheck()) is not None:
            poll = min(poll, recheck)
        with self._mutex:
            if self._busy >= self.settings.max_concurrent:
                return poll
        if self._backlog:
            return 0.0
        if self._due is None:  # else the round just asked the watch
            try:
                self._read_due(self.store.next_due_at(self.scope))
            except StoreError:
                return poll
        due = self._due[0] if self._due is not None else None
        if due is None:
            return poll
        return min(poll, max(0.0, (due - self._ahead() - self.clock()).total_seconds()))

    def _ahead(self) -> timedelta:
        """How far ahead of their instant fire times are claimed: ``claim_ahead``; while the
        lock backend is unusable, the earliest due one must be :data:`LOCKS_DOWN_DELAY` late
        before a round claims (then all that are due), so that workers that can lock claim
        first and this one takes only what they leave (then skipped once its misfire grace has
        passed, if the backend is still down)."""
        if self.locks.problem() is not None:
            return -LOCKS_DOWN_DELAY
        return self._horizon()

    def _horizon(self) -> timedelta:
        """``claim_ahead``, grown for child runs to the longest time a pipeline's run is
        forked before its instant (:meth:`flowyml_sched.warm.Templates.ahead`, learned) plus
        the floor, left for the claim and the fenced start; none with ``run(once=True)``."""
        if self.templates is None or not self._claim_ahead:
            return self._claim_ahead
        return max(self._claim_ahead, timedelta(seconds=self.templates.longest_ahead() + PREPARE_FLOOR))

    def _shutdown(self) -> None:
        self._serving = False  # runners record their own runs from now on
        self._record_queued()
        grace = self.settings.grace
        self.notifier.stopping(f"draining, up to {grace:g} s")
        logger.info("stopping: no more claims; waiting up to %g s for %d running", grace, len(self._active))
        deadline = self._drain_deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not self._stop_now.is_set():
            if self.wait_idle(0.2):
                break
            self._record_queued()
            self._keep_lease()
        self._no_starts.set()  # runs still waiting for their instant are closed unstarted
        with self._mutex:
            remaining = list(self._active.values())
        reason = (
            "worker stopped at once (second signal)"
            if self._stop_now.is_set()
            else (f"worker shut down: the {grace:g} s grace period ran out")
        )
        for active in remaining:
            if active.child is not None:
                active.child.kill_grace = 0.0 if self._stop_now.is_set() else active.child.kill_grace
                active.child.stop(RunStatus.interrupted, reason)
        if remaining:  # runners record what they stopped or never started; in-process runs cannot be stopped
            with self._idle:
                self._idle.wait_for(lambda: all(a.in_process for a in self._active.values()), 15.0)
        with self._mutex:
            leftover = list(self._active.values())
        for active in leftover:  # in-process runs cannot be stopped: record them, then leave
            self._close(active.claim, RunStatus.interrupted, reason, wait=False)
        if self._flush_queued(time.monotonic() if self._stop_now.is_set() else deadline + STOP_FLUSH):
            try:
                if self._unconfirmed:
                    self._hand_over_unknown_claims()
                self.identity = replace(self.identity, heartbeat_at=self.clock(), status="stopped")
                self.store.heartbeat(self.identity)
            except StoreError as exc:
                logger.error("could not record the worker's stop: %s", exc)
        self._watch.close()
        if self._sync_file is not None:
            self._sync_file.close()
        for _ in self._runners:
            self._jobs.put(None)
        logger.info("worker %s stopped", self.identity.id)

    def _hand_over_unknown_claims(self) -> None:
        """At shutdown, after a claim round that failed: hand over the claims it may have
        stored all the same (:meth:`ScheduleStore.hand_over_unknown_claims`). Raises StoreError."""
        with self._mutex:
            known = list(self._active)
        if self.store.hand_over_unknown_claims(self.identity, known, self.clock()):
            logger.warning("claims whose write seemed to fail had been stored: handed over")
        self._unconfirmed = False

    def _record_queued(self) -> bool:
        """Write what is queued for the store; False (logged) when the store refused it."""
        try:
            self.store.record_queued_finishes()
        except StoreError as exc:
            logger.error("could not record finished runs: %s", exc)
            return False
        return True

    def _flush_queued(self, until: float) -> bool:
        """At the stop: write what is queued, trying again with backoff until the monotonic
        instant ``until``. False when the store never took it: the worker then leaves its row
        ``alive``, so that once its lease runs out another worker declares the runs it could
        not record ``abandoned`` (and stores their retries)."""
        delay = FENCE_RETRY_FIRST
        while not self._record_queued():
            if time.monotonic() + delay > until:
                logger.error("the store did not come back before the stop: runs not recorded stay 'running' "
                             "until another worker finds this worker's lease expired")  # fmt: skip
                return False
            time.sleep(delay)
            delay = min(delay * 2, self.settings.poll_interval)
        return True

    def _maintain(self, now: datetime) -> None:
        clock = time.monotonic()
        state = self._maintenance
        if clock >= state.heartbeat_due:
            state.heartbeat_due = clock + self.settings.heartbeat_interval
            if state.lease_stored and now >= self.identity.lease_expires_at:
                # this worker stalled past its lease: the others' heartbeats may have waited on
                # it (a stop inside a SQLite write transaction holds the store's write lock), so
                # their leases are read as expired only once they have had a lease to renew
                state.reap_after = now + timedelta(seconds=self.settings.lease)
            beat = self._heartbeat(now)
            state.lease_stored = True
            reap = state.reap_after is None or now >= state.reap_after
            if beat.others_expired and reap:
                abandoned = self.store.reap_abandoned(now)  # their retries are stored: a claim round takes them
                if abandoned:
                    self._emit(RunsAbandoned(tuple(abandoned)))
            self._due = None  # read again: another worker may have stored a retry meanwhile
            self._look_at_running = True  # and look at the runs going (a store that cannot wake it)
        if clock >= state.retention_due:
            state.retention_due = clock + RETENTION_INTERVAL
            older = now - timedelta(days=self.settings.keep_days) if self.settings.keep_days else None
            pruned = self.store.prune_history(self.settings.keep_runs, older)
            if pruned:
                logger.info("pruned %d old runs from history", pruned)
        if self._sync_file is not None:
            self._sync_file.apply_if_changed(now)

    def _read_due(self, due: datetime | None) -> None:
        """Keep the earliest due time as read. The one it replaces, when earlier, has been
        claimed (by this worker or another one on the host) and, when still ahead, its run is
        about to start: remembered for :meth:`_quiet_before_start`."""
        last = self._last_due
        if last is not None and (due is None or due > last):
            self._claimed_ahead.append(last)
        self._last_due = due
        self._due = (due,)

    def _quiet_before_start(self) -> float:
        """Seconds the loop waits before its round so as not to take the CPU (and this
        process's GIL) from runs claimed ahead that are about to start: until just after
        those starting within :data:`START_GUARD` (its own held runs, and the fire times it saw
        claimed); 0 when there are none."""
        if not self._held and not self._claimed_ahead:  # idle: nothing to look at
            return 0.0
        now = self.clock()
        with self._mutex:
            instants = [*self._held.values()]
        self._claimed_ahead = [at for at in self._claimed_ahead if at > now - START_SETTLE]
        instants += self._claimed_ahead
        soon = [left for left in ((at - now).total_seconds() for at in instants) if left <= START_GUARD]
        return max(0.0, *soon) + START_SETTLE.total_seconds() if soon else 0.0
