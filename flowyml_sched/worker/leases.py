"""Leases and heartbeats: a worker's identity, the lease its heartbeat renews, and what it
does when it finds another worker declared it dead (it stalled past its lease)."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

from flowyml_sched.errors import LockBackendUnavailable, LockLost, StoreError
from flowyml_sched.model import Claim, Heartbeat, RunStatus, WorkerInfo
from flowyml_sched.worker.events import LeaseLost, WorkerHeartbeat
from flowyml_sched.worker.parts import Active, Maintenance, WorkerParts, logger


class LeaseKeeping(WorkerParts):
    """The part of :class:`~flowyml_sched.worker.Worker` that keeps its lease."""

    _maintenance: Maintenance

    def _keep_lease(self) -> None:
        """While waiting for running work (draining, ``once``): heartbeat when due, so no other
        worker declares these runs abandoned and runs them again, and feed the watchdog."""
        state = self._maintenance
        if time.monotonic() >= state.heartbeat_due:
            state.heartbeat_due = time.monotonic() + self.settings.heartbeat_interval
            try:
                self._heartbeat(self.clock())
            except StoreError as exc:
                logger.error("heartbeat failed: %s", exc)
        self.notifier.watchdog()

    def _incarnation(self, now: datetime) -> WorkerInfo:
        """A new identity (``host:pid:random``) with a lease from ``now``: at start, and once
        another worker has declared this one dead (the old id stays dead)."""
        host = socket.gethostname()
        return WorkerInfo(
            id=f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            host=host,
            pid=os.getpid(),
            started_at=now,
            heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=self.settings.lease),
            status="alive",
            lock_backend=self.locks.kind,
        )

    def _owner(self, claim: Claim) -> WorkerInfo:
        """This worker as the owner of ``claim``: under the id it claimed it with."""
        return self.identity if claim.owner == self.identity.id else replace(self.identity, id=claim.owner)

    def _heartbeat(self, now: datetime) -> Heartbeat:
        """Renew the lease from ``now``. The lease this worker counts on moves only once the
        store has it: after a failed heartbeat (an outage) its fenced starts renew it first.
        One heartbeat at a time (the loop's and the runners' fenced starts): a worker declared
        dead goes on under one new id, not one per thread that noticed. Raises StoreError."""
        with self._lease_lock:
            renewed = replace(
                self.identity,
                heartbeat_at=now,
                lease_expires_at=now + timedelta(seconds=self.settings.lease),
                lock_problem=self.locks.problem(),
                lock_target=self.locks.target(),
            )
            beat = self.store.heartbeat(renewed)
            self.identity = renewed
            if not beat.lease_kept:
                self._lost_lease(now)
                self.store.heartbeat(self.identity)
        with self._mutex:
            running = len(self._active)
        self.notifier.status(f"serving; {running} running")
        self._emit(WorkerHeartbeat(self.identity, beat.lease_kept, running))
        return beat

    def _keep_locks(self, done: threading.Event) -> None:
        """The lock keeper, a thread of its own while the worker serves with a leased lock
        backend (Redis): every heartbeat interval, until ``done``, it asks the backend and
        extends the locks held (:meth:`_extend_locks`). Apart from the loop, so that a backend
        that does not answer (a timeout) never holds up the claims of other schedules."""
        while not done.wait(self.settings.heartbeat_interval):
            try:
                self._extend_locks(self.clock())
            except Exception:  # a bug must not end the keeping of the locks
                logger.exception("extending the run locks failed")

    def _extend_locks(self, now: datetime) -> None:
        """Ask the lock backend whether it answers (its problem goes in the heartbeat), and
        extend the run locks held (Redis: back to their full TTL). A lock found lost is logged
        and noted on its run: another run of the schedule may have started meanwhile. An
        unreachable backend is logged once by the backend; the locks' TTL runs on."""
        try:
            self.locks.check()
        except LockBackendUnavailable:
            return
        with self._mutex:
            held = list(self._active.values())
        for active in held:
            if self._extend(active, now) is False:
                return

    def _extend(self, active: Active, now: datetime) -> bool | None:
        """Extend ``active``'s locks; a lost one is logged and kept in ``active.lock_lost``.
        False when the backend did not answer, None when it holds none."""
        for lock in list(active.locks):
            try:
                lock.extend()
            except LockLost as exc:
                claim = active.claim
                note = f"{exc} (found at {now.isoformat()}): another run of the schedule may have started meanwhile"
                logger.error("%s for %s: %s", claim.schedule.name, claim.scheduled_for.isoformat(), note)
                with self._mutex:
                    active.lock_lost = note
            except LockBackendUnavailable:
                return False
        return True if active.locks else None

    def _locks_lost(self, claim: Claim) -> str | None:
        """At the end of ``claim``'s attempt: whether a lock it held was lost while it ran
        (looked at once more now, so that a loss since the last heartbeat is not missed)."""
        with self._mutex:
            active = self._active.get(claim.run_id)
        if active is None:
            return None
        try:
            self._extend(active, self.clock())
        except Exception:  # the run's own outcome must still be recorded
            logger.exception("%s for %s: looking at its run locks failed", claim.schedule.name, claim.scheduled_for)
        return active.lock_lost

    def _stop_stopped_elsewhere(self) -> None:
        """Stop the child of each run of this worker whose row another worker changed: it
        interrupted it (overlap ``replace``, from any host) or declared it abandoned. One read
        of the store, when children run. Raises StoreError."""
        with self._mutex:
            children = {run_id: a.child for run_id, a in self._active.items() if a.child and not a.child.stopping}
        if not children:
            return
        for run in self.store.stopped_elsewhere(list(children)):
            child = children.get(run.id) if run.id is not None else None
            if child is not None:
                reason = (run.error or "").splitlines()[-1:] or [f"its row was marked {run.status.value} elsewhere"]
                logger.warning(
                    "%s for %s: stopping it: %s", run.schedule_name, run.scheduled_for.isoformat(), reason[0]
                )
                child.stop(RunStatus.interrupted, reason[0])

    def _lost_lease(self, now: datetime) -> None:
        """This worker missed its lease (stalled longer than ``lease``) and another worker
        declared its runs abandoned, perhaps retrying them: stop its own copies now. It goes on
        under a new id (from ``now``); what it claimed under the old one never starts."""
        with self._mutex:  # a child not registered yet is stopped by its runner (see _lost_ids)
            children = [a.child for a in self._active.values() if a.child is not None]
            self._lost_ids.add(self.identity.id)
        reborn = self._incarnation(now)
        self._emit(LeaseLost(self.identity.id, len(children), reborn.id))
        for child in children:
            child.stop(RunStatus.interrupted, "the worker's lease expired while it ran")
        self.identity = reborn
