"""Running claims: a runner thread per batch of one schedule's claims, the wait for the fire
time, the fenced start, the overlap policy, attempts and retries, and recording the end."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from flowyml_sched.dispatch import DEFAULT_MISFIRE_GRACE
from flowyml_sched.errors import LockBackendUnavailable, StoreError
from flowyml_sched.executor import STALLED, ChildRun, Outcome, RunRequest, call_with_timeout, prepare_in_process
from flowyml_sched.locks import RunLock
from flowyml_sched.model import Claim, Overlap, Run, RunOrigin, RunStatus
from flowyml_sched.worker.events import RunFinished, RunMissed, RunSkipped, RunStarted
from flowyml_sched.worker.leases import LeaseKeeping
from flowyml_sched.worker.parts import Active, logger

PREPARE_AHEAD = 0.005
"""Seconds before its instant at which a held run wakes to prepare and write its fenced start
(after a sleep, that Python work runs several times slower than warm); a child forked from a
warm template is forked earlier (:meth:`RunExecution._prepare_ahead`)."""
SPIN = 0.001
"""Seconds before its instant at which a prepared run stops sleeping and yields the CPU until
then: on a virtual machine the timer wakes a thread up to a millisecond late."""
STOPPED_BY_USER = "not started: the schedule was"
"""The start of the error of a fire time claimed ahead whose schedule was paused or removed
before its instant (:meth:`~flowyml_sched.store.ScheduleStore.start_attempt` refuses it)."""
UNSTARTED = "the worker stopped before this run started"
"""The error of a claimed run closed ``interrupted`` before it started."""
LEASE_LOST = "the worker's lease expired before this run started; another worker took its runs over"
"""The error of a run claimed ahead that its worker, stalled past its lease, does not start."""
FENCED = "its start was refused: the run is no longer this worker's to start (its lease ran out)"
"""The error of an attempt whose fenced start changed nothing (:meth:`ScheduleStore.start_attempt`)."""
START_NOT_RECORDED = "its start could not be recorded before its misfire grace ended"
"""The error of a fire time that did not run because the store refused its fenced start."""
LOCK_BACKEND_UNREACHABLE = "lock backend unreachable"
"""The start of the error of a fire time not run because its lock could not be asked for
within its misfire grace."""
ANOTHER_STORE_RAN_IT = "another process sharing the Redis server claimed this fire time (its own store runs it)"
"""The error of a fire time that a process with a store of its own did not run (Redis mode)."""
REPLACE_WAIT = 30.0
"""Seconds a run waits for the run it replaces (overlap ``replace``) to stop, on any host:
its worker sees the stop at its next round (woken by the store's change watch) and gives the
child :data:`~flowyml_sched.executor.ChildRun.kill_grace` to end; plus the lock backend's
``lapse`` (a Redis lock of a worker that died lives until its TTL)."""
FENCE_RETRY_FIRST = 0.05
"""Seconds before the first retry of a fenced start the store refused; doubled each time, up
to the poll interval."""


class RunExecution(LeaseKeeping):
    """The part of :class:`~flowyml_sched.worker.Worker` that runs what it claimed."""

    def _start(self, claims: list[Claim]) -> None:
        """Hand ``claims`` (of one schedule, oldest first) to a runner thread, which runs them
        one after the other; a runner is started when none is waiting for work."""
        with self._mutex:
            for claim in claims:
                self._active[claim.run_id] = Active(claim)
            self._busy += 1
            start_runner = self._waiting_runners == 0
            if start_runner:
                self._waiting_runners += 1
                runner = threading.Thread(target=self._serve_jobs, name=f"runner-{len(self._runners)}", daemon=True)
                self._runners.append(runner)
        self._jobs.put(claims)
        if start_runner:
            runner.start()

    def _serve_jobs(self) -> None:
        """A runner thread: run jobs until the ``None`` that :meth:`_shutdown` sends."""
        while (job := self._jobs.get()) is not None:
            with self._mutex:
                self._waiting_runners -= 1
            try:
                self._execute_all(job)
            except BaseException:  # a bug, or a pipeline's stray BaseException, must not take the runner down
                logger.exception("a runner failed")
            finally:
                with self._mutex:
                    self._busy -= 1
                    self._waiting_runners += 1
                    self._idle.notify_all()
                self._wake.set()

    def _execute_all(self, claims: list[Claim]) -> None:
        try:
            for index, claim in enumerate(claims):
                held = self._hold(claim)
                if (index or held) and self._too_late_to_start():
                    self._close(claim, RunStatus.interrupted, UNSTARTED)
                    continue
                self._execute(claim)
        finally:
            with self._mutex:
                for claim in claims:  # also those an escaping error left unstarted
                    self._active.pop(claim.run_id, None)
                    self._held.pop(claim.run_id, None)

    def _hold(self, claim: Claim) -> bool:
        """A run claimed ahead of its fire time (by this worker, or by one whose abandoned run
        this one retries) waits for it: True when it waited. It sleeps until it must be
        prepared (:meth:`_prepare_ahead` seconds before the instant), prepares, and
        :meth:`_at_instant` waits out the rest; a second stop signal or the grace period's end
        stops the wait."""
        delay = (claim.scheduled_for - self.clock()).total_seconds()
        if delay <= 0:
            return False
        with self._mutex:
            self._held[claim.run_id] = claim.scheduled_for
        self._no_starts.wait(max(0.0, delay - self._prepare_ahead(claim)))
        return True

    def _until_fence(self, claim: Claim) -> None:
        """Wait until :data:`PREPARE_AHEAD` seconds before ``claim``'s instant, when its
        fenced start is written (a prepared child was forked earlier), or a stop signal."""
        left = (claim.scheduled_for - self.clock()).total_seconds() - PREPARE_AHEAD
        if left > 0:
            self._no_starts.wait(left)

    def _prepare_ahead(self, claim: Claim) -> float:
        """Seconds before its instant a held run wakes to prepare: :data:`PREPARE_AHEAD` in
        this process; for a child forked from a template, what the templates learned its
        pipeline needs (:meth:`flowyml_sched.warm.Templates.ahead`)."""
        if self.templates is None or claim.schedule.name in self.callables:
            return PREPARE_AHEAD
        return self.templates.ahead(claim.schedule.pipeline)

    def _at_instant(self, claim: Claim) -> None:
        """Right before a held run starts: wait for its fire time, the last :data:`SPIN` seconds
        yielding the CPU in a loop, until a second stop signal or the grace period's end."""
        with self._mutex:
            if claim.run_id not in self._held:
                return
        left = (claim.scheduled_for - self.clock()).total_seconds()
        end = time.monotonic() + left  # by the monotonic clock too: a frozen wall clock cannot hold it
        if left > SPIN:
            self._no_starts.wait(left - SPIN)
        while self.clock() < claim.scheduled_for and time.monotonic() < end and not self._no_starts.is_set():
            time.sleep(0)
        with self._mutex:
            self._held.pop(claim.run_id, None)

    def _fence(
        self, claim: Claim, run_uuid: str, log_path: Path | None, wait: bool = True
    ) -> tuple[Outcome | None, float]:
        """The fenced start (:meth:`ScheduleStore.start_attempt`), written before the pipeline
        starts, then the wait for the fire time. Returns, first, None when the attempt starts
        now, else the outcome to record for it: ``interrupted`` when the store refused the start (the row
        is no longer this worker's unstarted claim, or its lease is gone), the worker is
        stopping (past its grace period; at once for a run asked for, which is handed over),
        or it stalled past its lease after the write; ``missed`` when the store could
        not be reached in time.

        A lease that ran out by this worker's clock is renewed first, and so is one the store
        refused the start for (the heartbeat says whether another worker declared this one
        dead meanwhile: then its runs are gone). A write the store refuses is tried
        again, as long as the fire time is within its misfire grace and the worker is not
        stopping.

        Second, the monotonic instant (``time.monotonic()``, the same clock in every process of
        the host) by which the pipeline must have started: the end of the lease as known before
        the write. A child process checks it again just before the pipeline's first line, so
        that a worker stalled between here and the child's start starts nothing late.

        Without ``wait``, it returns right after the write, before the instant: the caller
        releases a prepared child that waits for the instant and checks ``start_by`` itself."""
        if self._too_late_to_start() or (claim.origin is not RunOrigin.schedule and self._stopping.is_set()):
            return Outcome(RunStatus.interrupted, UNSTARTED), 0.0  # a run asked for is handed over (_close)
        grace = claim.schedule.policy.misfire_grace or DEFAULT_MISFIRE_GRACE
        give_up = claim.scheduled_for + grace
        delay = FENCE_RETRY_FIRST
        renew = False
        while True:
            me = self.identity
            if claim.owner != me.id:  # claimed before this worker was declared dead
                return Outcome(RunStatus.interrupted, LEASE_LOST), 0.0
            try:
                now = self.clock()
                if renew or now >= me.lease_expires_at:
                    self._heartbeat(now)
                    me = self.identity
                    if claim.owner != me.id:  # declared dead meanwhile: this claim was taken from it
                        return Outcome(RunStatus.interrupted, LEASE_LOST), 0.0
                # the lease as known before the write: a stall inside it counts against the lease
                must_start_by = time.monotonic() + (me.lease_expires_at - now).total_seconds()
                started = self.store.start_attempt(
                    claim,
                    me,
                    started_at=max(now, claim.scheduled_for),
                    run_uuid=run_uuid,
                    log_path=None if log_path is None else str(log_path),
                )
                if started:
                    break
                if (stopped := self.store.stopped_by_user(claim.schedule.name)) is not None and (
                    claim.origin is RunOrigin.schedule and claim.attempt == 1
                ):
                    return Outcome(RunStatus.skipped, f"{STOPPED_BY_USER} {stopped} before its fire time"), 0.0
                if renew:
                    break
                renew = True  # refused: once more after renewing the lease, in case only it had run out
                continue
            except StoreError as exc:
                if self.clock() + timedelta(seconds=delay) >= give_up or self._stopping.wait(delay):
                    logger.error("%s for %s: %s", claim.schedule.name, claim.scheduled_for.isoformat(), exc)
                    return Outcome(RunStatus.missed, f"{START_NOT_RECORDED}: {exc.reason}"), 0.0
                delay = min(delay * 2, self.settings.poll_interval)
        if not started:
            return Outcome(RunStatus.interrupted, FENCED), must_start_by
        if not wait:
            return None, must_start_by
        self._at_instant(claim)
        if self._too_late_to_start():
            return Outcome(RunStatus.interrupted, UNSTARTED), must_start_by
        if time.monotonic() > must_start_by:
            return Outcome(RunStatus.interrupted, STALLED), must_start_by
        return None, must_start_by

    def _too_late_to_start(self) -> bool:
        """Claimed runs still start while draining, until the grace period ends or a second signal."""
        deadline = self._drain_deadline
        return self._no_starts.is_set() or (deadline is not None and time.monotonic() >= deadline)

    def _execute(self, claim: Claim) -> None:
        schedule = claim.schedule
        lock: RunLock | None = None
        queue_lock: RunLock | None = None
        try:
            ours = self._ask_locks(claim, lambda: self.locks.take_fire_time(schedule.name, claim.scheduled_for))
            if not ours:
                if ours is not None:
                    self._close(claim, RunStatus.skipped, ANOTHER_STORE_RAN_IT)
                return
            if schedule.policy.overlap is not Overlap.allow:
                lock = self.locks.lock(schedule.name)
                taken = self._ask_locks(claim, lambda: lock.acquire(0))  # a held run takes it early when free
                if taken is None:
                    return
                if not taken:  # else at its instant (the previous run may end by then)
                    self._at_instant(claim)
                    if self._too_late_to_start():
                        self._close(claim, RunStatus.interrupted, UNSTARTED)
                        return
                    # a retry (or an attempt handed over) waits for the previous run: it is owed
                    # already; the misfire grace at most, then it meets the overlap policy. A
                    # backfill waits as long as it takes (until the worker stops)
                    backfill = claim.origin is RunOrigin.backfill
                    taken = self._ask_locks(claim, lambda: lock.acquire(0))
                    if taken is None:
                        return
                    if not taken and not (claim.owed and self._wait_for(lock, None if backfill else claim)):
                        if backfill:
                            self._close(claim, RunStatus.interrupted, UNSTARTED)
                            return
                        lock, queue_lock = self._overlap(claim, lock)
                        if lock is None:
                            return
                self._holding(claim, lock)
            self._attempts(claim)
        except LockBackendUnavailable as exc:
            self._close(claim, RunStatus.skipped, f"{LOCK_BACKEND_UNREACHABLE} ({exc.url}: {exc.reason})")
        except Exception:
            logger.exception("%s for %s: the worker failed running it", schedule.name, claim.scheduled_for.isoformat())
            self._close(claim, RunStatus.failed, "worker error")
        finally:
            for held in (lock, queue_lock):
                if held is not None:
                    held.release()
            with self._mutex:
                self._active.pop(claim.run_id, None)

    def _ask_locks(self, claim: Claim, ask: Callable[[], bool]) -> bool | None:
        """``ask()`` of the lock backend, asked again while it is unreachable (or refuses)
        until ``claim``'s misfire grace (from its fire time, or from now if that is later) has
        passed; then the fire time is closed ``skipped`` ("lock backend unreachable"), never
        run unguarded, and None returned (also when the worker stops: closed
        ``interrupted``). Otherwise what ``ask`` answered. While it waits, its run slot
        (``--max-concurrent``) is given back, so that schedules needing no lock still run;
        it takes a slot again, waiting for one, before it goes on."""
        grace = claim.schedule.policy.misfire_grace or DEFAULT_MISFIRE_GRACE
        give_up = max(claim.scheduled_for, self.clock()) + grace
        delay = FENCE_RETRY_FIRST
        slot_given_back = False
        answer: bool | None = None
        try:
            while True:
                try:
                    answer = ask()
                    return answer
                except LockBackendUnavailable as exc:
                    if self._no_starts.is_set() or self._stopping.is_set():
                        self._close(claim, RunStatus.interrupted, UNSTARTED)
                        return None
                    if self.clock() + timedelta(seconds=delay) >= give_up:
                        self._close(claim, RunStatus.skipped, f"{LOCK_BACKEND_UNREACHABLE} ({exc.url}: {exc.reason})")
                        return None
                    if not slot_given_back:
                        slot_given_back = True
                        with self._idle:
                            self._busy -= 1
                            self._idle.notify_all()
                        self._wake.set()  # the loop may claim again
                    self._stopping.wait(delay)
                    delay = min(delay * 2, self.settings.poll_interval)
        finally:
            if slot_given_back:
                with self._idle:
                    if answer is not None:  # it goes on: within the concurrency, as any run
                        self._idle.wait_for(
                            lambda: self._busy < self.settings.max_concurrent or self._stopping.is_set()
                        )
                    self._busy += 1

    def _holding(self, claim: Claim, lock: RunLock) -> None:
        """Note that ``claim``'s run holds ``lock``: the lock keeper extends it."""
        with self._mutex:
            active = self._active.get(claim.run_id)
            if active is not None:
                active.locks.append(lock)

    def _released(self, claim: Claim, lock: RunLock) -> None:
        with self._mutex:
            active = self._active.get(claim.run_id)
            if active is not None and lock in active.locks:
                active.locks.remove(lock)

    def _wait_for(self, lock: RunLock, claim: Claim | None = None) -> bool:
        """Wait for ``lock`` until the worker stops or, with ``claim``, its misfire grace has
        passed; True once held. An unreachable lock backend is waited out (logged once by it)."""
        grace = (claim.schedule.policy.misfire_grace or DEFAULT_MISFIRE_GRACE) if claim else None
        deadline = None if grace is None else time.monotonic() + grace.total_seconds()
        while not self._stopping.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                if lock.acquire(0.5):
                    return True
            except LockBackendUnavailable:
                self._stopping.wait(0.5)
        return False

    def _overlap(self, claim: Claim, lock: RunLock) -> tuple[RunLock | None, RunLock | None]:
        """The previous run holds the lock: apply the overlap policy. Returns the held locks,
        or (None, None) when this fire time does not run (its row is closed here). Raises
        LockBackendUnavailable."""
        schedule = claim.schedule
        overlap = schedule.policy.overlap
        if overlap is Overlap.skip:
            self._close(
                claim, RunStatus.skipped, "the previous run was still going, or waiting to retry (overlap: skip)"
            )
            return None, None
        if overlap is Overlap.queue:
            queue_lock = self.locks.lock(f"{schedule.name}+queued")  # '+' is in no schedule name
            if not queue_lock.acquire(0):
                self._close(
                    claim, RunStatus.skipped, "a run was already waiting behind the running one (overlap: queue)"
                )
                return None, None
            self._holding(claim, queue_lock)  # extended while it waits
            try:
                if self._wait_for(lock):
                    return lock, None
            finally:
                self._released(claim, queue_lock)
                queue_lock.release()  # the next fire time may wait now
            self._close(claim, RunStatus.interrupted, "the worker stopped while the run waited (overlap: queue)")
            return None, None
        if self._stopping.is_set():  # draining: the running one keeps its grace period
            self._close(claim, RunStatus.interrupted, UNSTARTED)
            return None, None
        # replace: stop the running one, then take its place; a worker on another host stops its
        # own once it sees its row interrupted (the store's change watch wakes it)
        now = self.clock()
        for running in self.store.running_runs(schedule.name):
            if running.id == claim.run_id or running.scheduled_for >= claim.scheduled_for:
                continue  # only earlier runs are replaced; a later one claimed ahead waits for its instant
            reason = f"replaced by the run for {claim.scheduled_for.isoformat()} (overlap: replace)"
            if self.store.interrupt_run(running.id, now, reason):
                self._stop_running(running, reason)
        deadline = time.monotonic() + REPLACE_WAIT + self.locks.lapse  # a dead holder's Redis lock lapses first
        while time.monotonic() < deadline and not self._no_starts.is_set():
            if lock.acquire(0.5):
                return lock, None
        if self._no_starts.is_set():
            self._close(claim, RunStatus.interrupted, UNSTARTED)
        else:
            self._close(claim, RunStatus.failed, "the running run could not be replaced in time (overlap: replace)")
        return None, None

    def _stop_running(self, run: Run, reason: str) -> None:
        with self._mutex:
            mine = self._active.get(run.id) if run.id is not None else None
        if mine is not None and mine.child is not None:
            mine.child.stop(RunStatus.interrupted, reason)
        elif run.host == self.identity.host and run.pid and run.pid != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.pid, signal.SIGTERM)

    def _attempts(self, claim: Claim) -> None:
        """Run the claim's attempt and, while it fails with retries left, the next ones. Each
        retry is stored with the failure that calls for it (``retry_at``), so that another
        worker takes it if this one stops or dies first; meanwhile this worker keeps it (and
        the schedule's run lock) and takes it itself once the backoff has passed."""
        policy = claim.schedule.policy
        while True:
            started, outcome = self._attempt(claim)  # started None: it did not
            retry = (
                started is not None
                and outcome.status in (RunStatus.failed, RunStatus.timed_out)
                and claim.attempt <= policy.retries
            )
            retry_at = self.clock() + policy.retry_backoff if retry else None
            with self._mutex:
                if retry:
                    self._kept.add(claim.run_id)  # before the write: no round of this worker takes it
            try:
                closed = self._close(
                    claim,
                    outcome.status,
                    outcome.error,
                    outcome.pipeline_run_id,
                    started_at=started,
                    retry_at=retry_at,
                    wait=retry,
                    exception=outcome.exception,
                )
                if not closed or not retry:
                    return  # a retry recorded later (the store was down) is taken by a round
                if self._stopping.wait(policy.retry_backoff.total_seconds()):
                    return  # stored: another worker takes it once this one has stopped
                taken = self._take_retry(claim)
            finally:
                with self._mutex:
                    self._kept.discard(claim.run_id)
            if taken is None:
                return
            claim = taken

    def _take_retry(self, claim: Claim) -> Claim | None:
        """Take this worker's own pending retry of ``claim`` (the claim of its next attempt),
        trying again while the store is unreachable; None when another worker took it, or this
        one is stopping."""
        while not self._stopping.is_set():
            try:
                owner = self.identity
                taken = self.store.retry_run(claim.run_id, owner, claim.attempt)
                if taken is None:
                    return None
                return replace(claim, attempt=taken[0], retry_of=taken[1], owner=owner.id, owed=True)
            except StoreError as exc:
                logger.error("%s for %s: could not take its retry: %s", claim.schedule.name, claim.scheduled_for, exc)
                self._stopping.wait(self.settings.poll_interval)
        return None

    def _attempt(self, claim: Claim) -> tuple[datetime | None, Outcome]:
        """Run one attempt; returns when it started (None: it did not, and the outcome says
        why) and how it ended."""
        schedule = claim.schedule
        run_uuid = uuid.uuid4().hex
        request = RunRequest(
            schedule.pipeline,
            claim.run_params,
            claim.scheduled_for,
            run_uuid,
            schedule=schedule.name,
            attempt=claim.attempt,
            worker=claim.owner,
        )
        timeout = schedule.policy.timeout.total_seconds() if schedule.policy.timeout else None
        local = self.callables.get(schedule.name)
        if local is not None and local[0] != schedule.pipeline:
            local = None  # the stored pipeline changed since it was registered: run what is stored
        if local is not None or self.settings.in_process:  # the run id comes with the outcome
            call = prepare_in_process(request, None if local is None else local[1])
            if (refused := self._fence(claim, run_uuid, None)[0]) is not None:
                return None, refused
            started = self.clock()
            with self._mutex:
                if (active := self._active.get(claim.run_id)) is not None:
                    active.in_process = True
            self._emit(RunStarted(claim, started))
            if local is not None:
                outcome = call_with_timeout(call, timeout, f"run-{schedule.name}")
            else:
                outcome = call()
            return started, outcome if outcome.pipeline_run_id else replace(outcome, pipeline_run_id=run_uuid)
        stamp = claim.scheduled_for.strftime("%Y%m%dT%H%M%SZ")
        assert self.settings.log_dir is not None  # checked in __init__
        log_path = self.settings.log_dir / schedule.name / f"{stamp}-{claim.attempt}-{run_uuid[:8]}.log"
        child = ChildRun(request, log_path, self.settings.max_log_bytes)
        with self._mutex:
            active = self._active.get(claim.run_id)
            if active is not None:
                active.child = child  # a stop (replace, shutdown) reaches it from now on
        child.prepare(self.templates)  # forked now, resolved, waiting for its instant
        self._until_fence(claim)  # a pause or removal until then is honoured
        early = child.prepared  # released right after the fenced start, it waits for the instant itself
        refused, start_by = self._fence(claim, run_uuid, log_path, wait=not early)
        if refused is not None:
            child.cancel()  # nothing of it ran
            return None, refused
        with self._mutex:
            if claim.owner in self._lost_ids:  # the lease was lost after the fenced start: stopped at once
                child.stop(RunStatus.interrupted, "the worker's lease expired while it ran")
        if early:
            now = self.clock()
            child.start(start_by, at=time.monotonic() + max(0.0, (claim.scheduled_for - now).total_seconds()))
            started = max(now, claim.scheduled_for)  # when its first line runs
            self._at_instant(claim)
            if self._too_late_to_start():  # a second signal meanwhile: it is stopped as it starts
                child.stop(RunStatus.interrupted, "the worker stopped at once as this run started")
        else:
            started = self.clock()
            child.start(start_by)
        self._emit(RunStarted(claim, started))
        if child.pid is not None:
            self.store.note_pid(claim.run_id, self._owner(claim), child.pid)
            self._wake.set()  # the loop's next round writes it
        if self._stopping.is_set() and self._stop_now.is_set():
            child.stop(RunStatus.interrupted, "worker stopped at once (second signal)")
        return started, child.wait(timeout)

    def _close(
        self,
        claim: Claim,
        status: RunStatus,
        error: str | None,
        pipeline_run_id: str | None = None,
        *,
        started_at: datetime | None = None,
        retry_at: datetime | None = None,
        wait: bool = True,
        exception: BaseException | None = None,
    ) -> bool:
        """Record the run's end (with ``retry_at``, the retry it calls for). A retry that did
        not start keeps the outcome of the attempt before it, with a line saying why. A run
        asked for (``trigger``, ``backfill``) that the stopping worker did not start is handed
        over: due at once for another worker (or this one, started again). With
        ``wait`` False, while the loop serves, the next round records it (with others, in one
        transaction) and this returns True at once; otherwise returns whether the row was
        still this worker's running run. A write the store refuses is queued for the loop's
        rounds, which try it again until the store takes it (False then)."""
        finished_at = self.clock()
        if (
            started_at is None
            and status is RunStatus.interrupted
            and claim.origin is not RunOrigin.schedule
            and self._stopping.is_set()
        ):
            retry_at = finished_at  # asked for, and the worker stops before it starts: another worker takes it
        if claim.retry_of is not None and started_at is None:
            status, error = claim.retry_of, f"attempt {claim.attempt}: not started: {error}"
        if started_at is not None:  # a lock lost while it ran: what overlap could not promise, on the run
            lock_lost = self._locks_lost(claim)
            if lock_lost is not None:
                error = f"{error}\n{lock_lost}" if error else lock_lost
        queue = self._serving and not wait
        finishing = functools.partial(
            self.store.finish_run,
            claim.run_id,
            self._owner(claim),
            status,
            finished_at,
            error=error,
            pipeline_run_id=pipeline_run_id,
            started_at=started_at,
            retry_at=retry_at,
        )
        try:
            closed = finishing(wait=not queue)
        except StoreError as exc:
            logger.error("%s for %s: %s; recording it later", claim.schedule.name, claim.scheduled_for, exc)
            finishing(wait=False)  # no retry meanwhile: whether the row is still this worker's is unknown
            queue, closed = True, False
        if queue:
            self._wake.set()
        if status is RunStatus.missed:
            self._emit(RunMissed(claim.schedule.name, claim.scheduled_for, error or "missed"))
        else:
            end = RunSkipped if status is RunStatus.skipped else RunFinished
            recorded = None if queue else closed
            self._emit(end(claim, status, error, started_at, finished_at, retry_at, recorded, exception))
        return closed
